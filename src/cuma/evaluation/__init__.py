"""Evaluation on surveys: multiple-choice scoring of a model and the topology of its routing.

The names load on first use, so ``cuma interference --help`` (`cuma.evaluation.cli`) imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cuma.lazy import lazy_exports

if TYPE_CHECKING:
    from cuma.evaluation.scoring import answer_logits, method_call, score_examples
    from cuma.evaluation.topology import RoutingCollector, expert_usage, group_projection, usage_matrix

_HOMES = {
    "answer_logits": "cuma.evaluation.scoring",
    "method_call": "cuma.evaluation.scoring",
    "score_examples": "cuma.evaluation.scoring",
    "RoutingCollector": "cuma.evaluation.topology",
    "expert_usage": "cuma.evaluation.topology",
    "group_projection": "cuma.evaluation.topology",
    "usage_matrix": "cuma.evaluation.topology",
}

__all__ = [
    "RoutingCollector",
    "answer_logits",
    "expert_usage",
    "group_projection",
    "method_call",
    "score_examples",
    "usage_matrix",
]

__getattr__ = lazy_exports("cuma.evaluation", _HOMES)
