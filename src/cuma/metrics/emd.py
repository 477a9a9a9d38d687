"""Per-question argmax EMD as WorldValuesBench computes it, and its threshold curve (notes §4.3–4.4).

WorldValuesBench compares, per question, the empirical sample of true answers with the empirical sample
of argmax predictions of the same respondents, both scaled to [0, 1]. Its official ``evaluate()``
(observed on the test vectors) takes the true answer of *every* participant listed for a question, but
only the model scores that parse as numbers (truncated with ``astype(int)``), so an invalid score
shrinks the model's sample and not the human one.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.stats import wasserstein_distance

from cuma.metrics.frame import iter_questions, require_columns

THRESHOLDS = np.arange(0, 0.6 + 1e-8, 0.05)
"""EMD thresholds of the coverage curve: 0, 0.05, ..., 0.6 (13 points), the authors' (see docs/design.md)."""


def scaled_emd(
    true_codes: np.ndarray, predicted_codes: np.ndarray, scale_min: float, scale_max: float
) -> float:
    """1-D Wasserstein distance between two answer samples after mapping the scale onto [0, 1]."""
    if scale_max <= scale_min:
        raise ValueError(f"answer scale must have scale_max > scale_min, got [{scale_min}, {scale_max}]")
    span = scale_max - scale_min
    return float(
        wasserstein_distance(
            (np.asarray(true_codes, dtype=float) - scale_min) / span,
            (np.asarray(predicted_codes, dtype=float) - scale_min) / span,
        )
    )


def wvb_emd(
    predictions: pd.DataFrame, answers: pd.DataFrame, metadata: Mapping[str, Mapping]
) -> dict[str, float]:
    """Per-question EMD exactly as WorldValuesBench's official ``evaluate()``.

    Args:
        predictions: benchmark columns ``QUESTION_ID, PARTICIPANT_ID, SCORE``; a SCORE that does not
            parse as a number (empty, "N/A", ...) is invalid and dropped from the model's sample only.
        answers: true answers indexed by participant (``D_INTERVIEW``), one column per question.
        metadata: ``question_metadata.json``; each question needs ``answer_scale_min/max``.

    Returns:
        question -> EMD, in order of first appearance in ``predictions``.
    """
    require_columns(predictions, ["QUESTION_ID", "PARTICIPANT_ID", "SCORE"], what="WVB predictions")
    scores = pd.to_numeric(predictions["SCORE"], errors="coerce")
    infinite = np.isinf(scores.to_numpy(dtype=float, na_value=np.nan))
    if infinite.any():
        row = predictions.index[infinite][0]
        raise ValueError(f"WVB predictions row {row}: SCORE={predictions.at[row, 'SCORE']!r} is not finite")
    if not answers.index.is_unique:
        raise ValueError(
            "answers table: participant index has duplicates; it must have one row per participant"
        )
    result = {}
    for question, rows in predictions.groupby("QUESTION_ID", sort=False):
        if question not in metadata:
            raise ValueError(f"question {question!r} is not in the question metadata")
        if question not in answers.columns:
            raise ValueError(f"question {question!r} has no column in the answers table")
        participants = rows["PARTICIPANT_ID"]
        unknown = participants[~participants.isin(answers.index)]
        if len(unknown):
            raise ValueError(
                f"question {question!r}: participant {unknown.iloc[0]} is not in the answers table"
            )
        truth = answers.loc[participants.to_numpy(), question]
        if truth.isna().any():
            raise ValueError(
                f"question {question!r}: participant {truth.index[truth.isna()][0]} has no true answer"
            )
        valid = scores.loc[rows.index].dropna()
        if valid.empty:
            raise ValueError(f"question {question!r}: no valid SCORE among {len(rows)} predictions")
        info = metadata[question]
        result[question] = scaled_emd(
            truth.astype(int).to_numpy(),
            valid.astype(int).to_numpy(),
            info["answer_scale_min"],
            info["answer_scale_max"],
        )
    return result


def argmax_emd(predictions: pd.DataFrame) -> dict[str, float]:
    """WVB-style EMD per question from the project's predictions DataFrame (every score is valid)."""
    return {
        block.question_id: scaled_emd(
            block.option_codes[block.target],
            block.option_codes[block.predicted],
            block.scale_min,
            block.scale_max,
        )
        for block in iter_questions(predictions, need_probs=False)
    }


def emd_coverage(emds: Mapping[str, float], thresholds: np.ndarray = THRESHOLDS) -> np.ndarray:
    """Fraction (0..1) of questions whose EMD is <= each threshold."""
    values = np.fromiter(emds.values(), dtype=float)
    if values.size == 0:
        raise ValueError("no per-question EMD values to summarise")
    return (values[None, :] <= np.asarray(thresholds)[:, None]).mean(axis=1)


def emd_summary(emds: Mapping[str, float], thresholds: np.ndarray = THRESHOLDS) -> dict[str, float]:
    """Mean, median, coverage per threshold and the area under the coverage curve.

    ``auc_pct`` is in the authors' units (see docs/design.md): trapezoid of 100 x coverage over the
    thresholds, so at most
    60 with the default thresholds. ``auc_norm`` divides the area of the 0..1 coverage by the threshold
    range, so 1.0 means every question has EMD 0.
    """
    values = np.fromiter(emds.values(), dtype=float)
    coverage = emd_coverage(emds, thresholds)
    thresholds = np.asarray(thresholds, dtype=float)
    summary = {"mean": float(values.mean()), "median": float(np.median(values))}
    summary |= {f"coverage@{t:.2f}": float(c) for t, c in zip(thresholds, coverage, strict=True)}
    summary["auc_pct"] = float(np.trapezoid(100 * coverage, thresholds))
    summary["auc_norm"] = float(np.trapezoid(coverage, thresholds) / (thresholds[-1] - thresholds[0]))
    return summary
