"""Evaluation on surveys: multiple-choice scoring of a model and the topology of its routing."""

from cuma.evaluation.scoring import answer_logits, method_call, score_examples
from cuma.evaluation.topology import RoutingCollector, expert_usage, group_projection, usage_matrix

__all__ = [
    "RoutingCollector",
    "answer_logits",
    "expert_usage",
    "group_projection",
    "method_call",
    "score_examples",
    "usage_matrix",
]
