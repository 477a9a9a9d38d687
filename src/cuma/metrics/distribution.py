"""Distributional alignment per question and demographic group, against that group's human answers.

Two predicted distributions are compared with the human one:
``prob_*`` uses the mean of the model's option probabilities over the group's respondents, and
``argmax_*`` the histogram of its argmax answers. EMD is on the answer scale mapped onto [0, 1] and is
only computed for ordinal questions (NaN otherwise); Jensen–Shannon distance (base 2) and total
variation are in [0, 1] for every question.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import rel_entr
from scipy.stats import wasserstein_distance

from cuma.metrics.frame import QuestionBlock, group_values, iter_questions

POPULATION = "(all)"
"""``field`` and ``group`` value of the rows computed over every respondent of a question."""

METRICS = ("prob_emd", "prob_js", "prob_tv", "argmax_emd", "argmax_js", "argmax_tv")


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon distance in base 2, as ``scipy.spatial.distance.jensenshannon(p, q, base=2)``.

    Computed here so that rounding cannot make the divergence a tiny negative number and the distance NaN.
    """
    p = np.asarray(p, dtype=float) / np.sum(p)
    q = np.asarray(q, dtype=float) / np.sum(q)
    m = (p + q) / 2
    divergence = (rel_entr(p, m).sum() + rel_entr(q, m).sum()) / (2 * np.log(2))
    return float(np.sqrt(max(divergence, 0.0)))


def js_distances(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """`js_distance` along the last axis of two arrays of distributions (each already summing to 1)."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    m = (p + q) / 2
    divergence = (rel_entr(p, m).sum(axis=-1) + rel_entr(q, m).sum(axis=-1)) / (2 * np.log(2))
    return np.sqrt(np.maximum(divergence, 0.0))


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Half the L1 distance: the largest difference in probability the two give any set of options."""
    return float(0.5 * np.abs(np.asarray(p, dtype=float) - np.asarray(q, dtype=float)).sum())


def ordinal_emd(p: np.ndarray, q: np.ndarray, codes: np.ndarray, scale_min: float, scale_max: float) -> float:
    """EMD between two distributions over ordinal option codes, with the scale mapped onto [0, 1]."""
    positions = (np.asarray(codes, dtype=float) - scale_min) / (scale_max - scale_min)
    return float(wasserstein_distance(positions, positions, p, q))


def compare(block: QuestionBlock, mask: np.ndarray) -> dict[str, float]:
    """Every metric of :data:`METRICS` for the respondents of ``block`` selected by ``mask``."""
    k = len(block.option_codes)
    human = np.bincount(block.target[mask], minlength=k) / mask.sum()
    argmax = np.bincount(block.predicted[mask], minlength=k) / mask.sum()
    prob = block.probs[mask].mean(axis=0)
    result = {}
    for name, predicted in (("prob", prob), ("argmax", argmax)):
        result[f"{name}_emd"] = (
            ordinal_emd(predicted, human, block.option_codes, block.scale_min, block.scale_max)
            if block.ordinal
            else float("nan")
        )
        result[f"{name}_js"] = js_distance(predicted, human)
        result[f"{name}_tv"] = total_variation(predicted, human)
    return result


def distribution_table(
    predictions: pd.DataFrame, group_fields: Sequence[str], min_count: int = 5
) -> pd.DataFrame:
    """One row per question and group: ``question_id, field, group, n`` and every metric of :data:`METRICS`.

    Each question has a population row (``field == group == POPULATION``) and a row per non-missing value
    of each group field with at least ``min_count`` respondents (smaller groups' human distributions are
    too noisy to compare against).
    """
    records = []
    for block in iter_questions(predictions):
        everyone = np.ones(len(block.rows), dtype=bool)
        records.append(
            {"question_id": block.question_id, "field": POPULATION, "group": POPULATION, "n": len(everyone)}
            | compare(block, everyone)
        )
        for field in group_fields:
            values = group_values(block.rows, field)
            for group, count in values.value_counts(dropna=True, sort=False).sort_index().items():
                if count >= min_count:
                    records.append(
                        {"question_id": block.question_id, "field": field, "group": group, "n": int(count)}
                        | compare(block, (values == group).to_numpy())
                    )
    return pd.DataFrame.from_records(records, columns=["question_id", "field", "group", "n", *METRICS])


def distribution_summary(table: pd.DataFrame) -> dict[str, float]:
    """Means over questions of each metric: ``<metric>_mean`` on the population rows and
    ``<metric>_group_mean`` over every (question, group) row; NaN entries (nominal EMD) are skipped."""
    population = table[table["field"] == POPULATION]
    groups = table[table["field"] != POPULATION]
    summary = {}
    for metric in METRICS:
        summary[f"{metric}_mean"] = _nanmean(population[metric])
        summary[f"{metric}_group_mean"] = _nanmean(groups[metric])
    return summary


def _nanmean(values: pd.Series) -> float:
    finite = values.dropna()
    return float(finite.mean()) if len(finite) else float("nan")
