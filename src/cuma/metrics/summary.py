"""Every survey metric in one flat, JSON-ready dict, the row the comparison report shows per method."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from cuma.metrics.classification import accuracy, macro_f1, macro_group_accuracy, sigma_inequity
from cuma.metrics.collapse import collapse_summary
from cuma.metrics.distribution import distribution_summary, distribution_table
from cuma.metrics.emd import argmax_emd, emd_summary
from cuma.metrics.proper import answer_scores


def summarize(
    predictions: pd.DataFrame,
    group_fields: Sequence[str],
    main_group: str | None = None,
    min_count: int = 5,
) -> dict[str, float | int | None]:
    """All metrics of a predictions DataFrame (`cuma.metrics.frame.PREDICTIONS_SCHEMA`).

    Args:
        predictions: one row per (respondent, question).
        group_fields: demographic columns for sigma-inequity, group distributions and group spread.
        main_group: the field for ``macro_acc`` (e.g. country); ``macro_acc`` is None without it.
        min_count: smallest group (in answers) that sigma-inequity and the group metrics use.

    Returns:
        Flat keys. ``log_loss`` (natural log, probabilities clipped at `cuma.metrics.proper.EPS`),
        ``brier`` (sum over options, 0..2) and ``accuracy`` score each respondent's own answer (these
        proper scores lead the report). Keys with ``argmax`` come from argmax answers, keys with ``prob``
        from option probabilities. ``wvb_argmax_emd_*`` is the WorldValuesBench EMD over every question (mean,
        median, ``coverage@t``, ``auc_pct`` in the authors' units, max 60, ``auc_norm`` in 0..1);
        ``{prob,argmax}_{emd,js,tv}_mean`` compare population distributions per question and
        ``*_group_mean`` group distributions (EMD on ordinal questions only). Undefined numbers
        (e.g. sigma-inequity with one group) are None.
    """
    emd = emd_summary(argmax_emd(predictions))
    scores = answer_scores(predictions)
    result: dict[str, float | int | None] = {
        "n_answers": len(predictions),
        "n_questions": int(predictions["question_id"].nunique()),
        "log_loss": float(scores["log_loss"].mean()),
        "brier": float(scores["brier"].mean()),
        "accuracy": accuracy(predictions),
        "macro_f1": macro_f1(predictions),
        "macro_acc": macro_group_accuracy(predictions, main_group) if main_group else None,
        "sigma_inequity": sigma_inequity(predictions, group_fields, min_count),
    }
    parts = (
        {f"wvb_argmax_emd_{key}": value for key, value in emd.items()},
        distribution_summary(distribution_table(predictions, group_fields, min_count)),
        collapse_summary(predictions, group_fields, min_count),
    )
    for part in parts:
        clash = result.keys() & part.keys()
        if clash:
            raise RuntimeError(f"summary keys computed twice: {sorted(clash)}")
        result |= part
    return {
        key: None if isinstance(value, float) and math.isnan(value) else value
        for key, value in result.items()
    }
