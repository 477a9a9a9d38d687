"""Argmax accuracy metrics as the CuMA reference computes them (notes §4.2): overall, per group, inequity."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score

from cuma.metrics.frame import group_values, require_columns


def _correct(predictions: pd.DataFrame) -> pd.Series:
    require_columns(predictions, ["target_code", "predicted_code"])
    if predictions.empty:
        raise ValueError("predictions DataFrame is empty: no answers to score")
    return (predictions["predicted_code"] == predictions["target_code"]).astype(float)


def accuracy(predictions: pd.DataFrame) -> float:
    """Share of answers whose argmax option is the respondent's answer (micro over all rows)."""
    return float(_correct(predictions).mean())


def macro_f1(predictions: pd.DataFrame) -> float:
    """scikit-learn macro-F1 over option letters pooled across questions.

    Letters mean different things in different questions; pooling them is the authors' choice, kept so
    the numbers are comparable with the paper (see docs/design.md).
    """
    require_columns(predictions, ["target_letter", "predicted_letter"])
    if predictions.empty:
        raise ValueError("predictions DataFrame is empty: no answers to score")
    return float(
        f1_score(
            predictions["target_letter"].astype(str),
            predictions["predicted_letter"].astype(str),
            average="macro",
            zero_division=0,
        )
    )


def group_accuracy_table(predictions: pd.DataFrame, group_fields: Sequence[str]) -> pd.DataFrame:
    """One row per (field, group) with its answer count and accuracy; missing values are skipped."""
    correct = _correct(predictions)
    tables = []
    for field in group_fields:
        groups = group_values(predictions, field)
        stats = correct.groupby(groups, dropna=True, sort=True).agg(["size", "mean"])
        tables.append(
            pd.DataFrame(
                {
                    "field": field,
                    "group": stats.index.astype(str),
                    "n": stats["size"].to_numpy(),
                    "accuracy": stats["mean"].to_numpy(),
                }
            )
        )
    columns = ["field", "group", "n", "accuracy"]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)


def macro_group_accuracy(predictions: pd.DataFrame, field: str) -> float:
    """Unweighted mean of per-group accuracy over the field's non-missing groups (e.g. countries).

    NaN when every value of the field is missing.
    """
    table = group_accuracy_table(predictions, [field])
    return float(table["accuracy"].mean()) if len(table) else float("nan")


def sigma_inequity(predictions: pd.DataFrame, group_fields: Sequence[str], min_count: int = 5) -> float:
    """Mean over fields of the population std (``np.std``) of subgroup accuracies.

    Subgroups with fewer than ``min_count`` answers and missing values are skipped; fields left with one
    subgroup or none are skipped. NaN when no field qualifies.
    """
    table = group_accuracy_table(predictions, group_fields)
    kept = table[table["n"] >= min_count]
    spreads = [float(np.std(part["accuracy"])) for _, part in kept.groupby("field") if len(part) > 1]
    return float(np.mean(spreads)) if spreads else float("nan")
