"""Mean-collapse diagnostics: does the model answer like the average person instead of like the person?

A model that collapses to the mean gives (almost) every respondent the same answer, so the entropy of
its answers across respondents falls below the humans', and its answers differ less between
demographic groups than the humans' do. Entropies are in bits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import entropy

from cuma.metrics.distribution import js_distance
from cuma.metrics.frame import QuestionBlock, group_values, iter_questions


def entropy_table(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per question: ``n``, ``n_options``, ``pred_entropy`` (argmax answers across respondents),
    ``prob_entropy`` (of the mean predicted distribution), ``human_entropy``, and ``collapsed`` /
    ``human_collapsed`` (every respondent got / gave the same answer)."""
    records = []
    for block in iter_questions(predictions):
        k = len(block.option_codes)
        predicted = np.bincount(block.predicted, minlength=k)
        human = np.bincount(block.target, minlength=k)
        records.append(
            {
                "question_id": block.question_id,
                "n": len(block.rows),
                "n_options": k,
                "pred_entropy": float(entropy(predicted, base=2)),
                "prob_entropy": float(entropy(block.probs.mean(axis=0), base=2)),
                "human_entropy": float(entropy(human, base=2)),
                "collapsed": bool((predicted > 0).sum() == 1),
                "human_collapsed": bool((human > 0).sum() == 1),
            }
        )
    return pd.DataFrame.from_records(records)


def collapse_rate(predictions: pd.DataFrame) -> float:
    """Share of questions on which the model gives every respondent the same (argmax) answer."""
    return float(entropy_table(predictions)["collapsed"].mean())


def group_spread_table(
    predictions: pd.DataFrame, group_fields: Sequence[str], min_count: int = 5
) -> pd.DataFrame:
    """Per question and field, how far each group's answers sit from the pooled answers.

    ``*_spread`` is the mean over the field's groups (non-missing, at least ``min_count`` respondents;
    fields with fewer than two such groups are left out) of the Jensen–Shannon distance between the
    group's distribution and the distribution pooled over those groups: ``human_spread`` for the true
    answers, ``argmax_spread`` for argmax answers, ``prob_spread`` for mean probabilities.
    A collapsed model has a spread near 0 however much the humans differ.
    """
    records = []
    for block in iter_questions(predictions):
        for field in group_fields:
            values = group_values(block.rows, field)
            counts = values.value_counts(dropna=True)
            groups = counts.index[counts >= min_count]
            if len(groups) < 2:
                continue
            masks = [(values == group).to_numpy() for group in groups]
            records.append(
                {"question_id": block.question_id, "field": field, "n_groups": len(groups)}
                | {f"{kind}_spread": _spread(block, masks, kind) for kind in ("human", "argmax", "prob")}
            )
    columns = ["question_id", "field", "n_groups", "human_spread", "argmax_spread", "prob_spread"]
    return pd.DataFrame.from_records(records, columns=columns)


def _spread(block: QuestionBlock, masks: list[np.ndarray], kind: str) -> float:
    k = len(block.option_codes)
    if kind == "prob":
        per_row = block.probs
    else:
        per_row = np.eye(k)[block.target if kind == "human" else block.predicted]
    pooled = per_row[np.logical_or.reduce(masks)].mean(axis=0)
    return float(np.mean([js_distance(per_row[mask].mean(axis=0), pooled) for mask in masks]))


def collapse_summary(
    predictions: pd.DataFrame, group_fields: Sequence[str], min_count: int = 5
) -> dict[str, float]:
    """Flat collapse numbers: rates, mean entropies and mean group spreads (NaN if no field qualifies)."""
    entropies = entropy_table(predictions)
    spreads = group_spread_table(predictions, group_fields, min_count)
    summary = {
        "collapse_rate": float(entropies["collapsed"].mean()),
        "human_collapse_rate": float(entropies["human_collapsed"].mean()),
    }
    for column in ("pred_entropy", "prob_entropy", "human_entropy"):
        summary[f"{column}_mean"] = float(entropies[column].mean())
    for column in ("human_spread", "argmax_spread", "prob_spread"):
        summary[f"group_{column}_js"] = float(spreads[column].mean()) if len(spreads) else float("nan")
    return summary
