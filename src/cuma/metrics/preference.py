"""Preference metrics: win-rates from judge verdicts and choice accuracy (CA-Acc), with bootstrap intervals.

A verdict is one of `VERDICTS` from the method's side: ``win``, ``loss``, ``tie`` or ``failed`` (the judge
gave no usable answer). Failed verdicts are reported and left out, never counted as ties: the win-rate is
W / (W + L + T) and the tie-adjusted one (W + T/2) / (W + L + T). Intervals are percentile bootstraps over
units (prompts by default: each verdict its own prompt unless ``units`` names them), seeded.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from cuma.metrics.bootstrap import BootstrapConfig, bootstrap_ratios

VERDICTS = ("win", "loss", "tie", "failed")


@dataclass(frozen=True)
class WinRate:
    """Win-rate of one method over its opponent.

    Attributes:
        wins, losses, ties, failed: verdict counts (failed are not in the rates).
        units: prompts with at least one usable verdict.
        win_rate: W / (W + L + T).
        tie_adjusted: (W + T/2) / (W + L + T).
        win_rate_ci, tie_adjusted_ci: bootstrap intervals over prompts, None when not asked for.
    """

    wins: int
    losses: int
    ties: int
    failed: int
    units: int
    win_rate: float
    tie_adjusted: float
    win_rate_ci: tuple[float, float] | None = None
    tie_adjusted_ci: tuple[float, float] | None = None

    @property
    def judged(self) -> int:
        return self.wins + self.losses + self.ties


def _check_verdicts(verdicts: Sequence[str]) -> None:
    for i, verdict in enumerate(verdicts):
        if verdict not in VERDICTS:
            raise ValueError(f"verdict {i}: {verdict!r} is not one of {VERDICTS}")


def _unit_ids(n: int, units: Sequence[Hashable] | None, what: str) -> np.ndarray:
    if units is None:
        return np.arange(n)
    if len(units) != n:
        raise ValueError(f"{len(units)} units for {n} {what}; give one unit (prompt id) per {what[:-1]}")
    return pd.factorize(pd.Series(list(units), dtype=object), use_na_sentinel=False)[0]


def win_rate(
    verdicts: Sequence[str],
    *,
    units: Sequence[Hashable] | None = None,
    bootstrap: BootstrapConfig | None = BootstrapConfig(),
) -> WinRate:
    """Win-rates of the verdicts with percentile bootstrap intervals over prompts.

    Args:
        units: the prompt of each verdict, when a prompt has several (e.g. several samples); None
            makes each verdict its own prompt.
        bootstrap: None skips the intervals.
    """
    _check_verdicts(verdicts)
    ids = _unit_ids(len(verdicts), units, "verdicts")
    labels = np.asarray(verdicts, dtype=object)
    counts = {v: np.bincount(ids[labels == v], minlength=ids.max(initial=-1) + 1) for v in VERDICTS}
    wins, losses, ties = counts["win"], counts["loss"], counts["tie"]
    judged = wins + losses + ties
    kept = judged > 0
    if not kept.any():
        raise ValueError(f"no usable verdict: all {len(verdicts)} failed or none given")
    total = judged.sum()
    out = WinRate(
        wins=int(wins.sum()),
        losses=int(losses.sum()),
        ties=int(ties.sum()),
        failed=int(counts["failed"].sum()),
        units=int(kept.sum()),
        win_rate=float(wins.sum() / total),
        tie_adjusted=float((wins.sum() + ties.sum() / 2) / total),
    )
    if bootstrap is None:
        return out
    plain, adjusted = bootstrap_ratios(
        [wins[kept], wins[kept] + ties[kept] / 2], judged[kept], bootstrap, "prompts with a usable verdict"
    )
    return replace(out, win_rate_ci=plain, tie_adjusted_ci=adjusted)


def group_win_rates(
    verdicts: Sequence[str],
    profiles: Sequence[Mapping[str, object]],
    fields: Sequence[str],
    *,
    units: Sequence[Hashable] | None = None,
    bootstrap: BootstrapConfig | None = None,
) -> pd.DataFrame:
    """One row per (field, group) of the profiles: counts, win-rates and (with ``bootstrap``) intervals.

    Columns: ``field, group, units, wins, losses, ties, failed, win_rate, tie_adjusted`` and, with
    ``bootstrap``, ``win_rate_low, win_rate_high, tie_adjusted_low, tie_adjusted_high``. Missing values
    (None) form no group; a group whose verdicts all failed has NaN rates next to its failed count.
    """
    if len(profiles) != len(verdicts):
        raise ValueError(f"{len(profiles)} profiles for {len(verdicts)} verdicts")
    _check_verdicts(verdicts)
    rows = []
    for field in fields:
        values = []
        for i, profile in enumerate(profiles):
            if field not in profile:
                raise KeyError(f"verdict {i}: profile has no field {field!r} (fields {list(profile)})")
            values.append(None if profile[field] is None else str(profile[field]))
        for group in sorted({v for v in values if v is not None}):
            picked = [i for i, v in enumerate(values) if v == group]
            sub_units = None if units is None else [units[i] for i in picked]
            try:
                row = _group_row([verdicts[i] for i in picked], sub_units, bootstrap)
            except ValueError as error:
                raise ValueError(f"group {field}={group!r}: {error}") from None
            rows.append({"field": field, "group": group, **row})
    return pd.DataFrame(rows)


def _group_row(
    verdicts: list[str], units: list[Hashable] | None, bootstrap: BootstrapConfig | None
) -> dict[str, float | int]:
    intervals = ("win_rate_low", "win_rate_high", "tie_adjusted_low", "tie_adjusted_high")
    if all(v == "failed" for v in verdicts):
        counts = {"units": 0, "wins": 0, "losses": 0, "ties": 0, "failed": len(verdicts)}
        rates = dict.fromkeys(("win_rate", "tie_adjusted", *(intervals if bootstrap else ())), np.nan)
        return {**counts, **rates}
    result = win_rate(verdicts, units=units, bootstrap=bootstrap)
    row = {
        "units": result.units,
        "wins": result.wins,
        "losses": result.losses,
        "ties": result.ties,
        "failed": result.failed,
        "win_rate": result.win_rate,
        "tie_adjusted": result.tie_adjusted,
    }
    if result.win_rate_ci is not None and result.tie_adjusted_ci is not None:
        row.update(zip(intervals, (*result.win_rate_ci, *result.tie_adjusted_ci), strict=True))
    return row


@dataclass(frozen=True)
class ChoiceAccuracy:
    """Accuracy of choosing the annotator's response among K candidates (the paper's CA-Acc).

    Attributes:
        n: choices scored.
        correct: choices that picked the annotator's response.
        accuracy: correct / n.
        chance: the expected accuracy of a uniform guess, the mean of 1 / K.
        ci: bootstrap interval over units, None when not asked for.
    """

    n: int
    correct: int
    accuracy: float
    chance: float
    ci: tuple[float, float] | None = None


def choice_accuracy(
    predicted: Sequence[int],
    targets: Sequence[int],
    num_candidates: int | Sequence[int] = 4,
    *,
    units: Sequence[Hashable] | None = None,
    bootstrap: BootstrapConfig | None = BootstrapConfig(),
) -> ChoiceAccuracy:
    """CA-Acc of predicted candidate indices against the annotator's, with a bootstrap interval.

    Args:
        num_candidates: K, for every example or one per example.
        units: the unit of each example for the bootstrap (e.g. the prompt); None = each example.
    """
    predicted_arr, target_arr = np.asarray(predicted), np.asarray(targets)
    if predicted_arr.ndim != 1 or predicted_arr.shape != target_arr.shape or not len(predicted_arr):
        raise ValueError(
            f"predicted and targets must be non-empty and of one length, got {len(predicted)} and "
            f"{len(targets)}"
        )
    k = np.broadcast_to(np.asarray(num_candidates), predicted_arr.shape)
    for name, values in (("predicted", predicted_arr), ("target", target_arr)):
        bad = np.flatnonzero((values < 0) | (values >= k))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"example {i}: {name} index {values[i]} is not among its {k[i]} candidates")
    if (k < 2).any():
        raise ValueError(f"example {int(np.flatnonzero(k < 2)[0])}: a choice needs at least 2 candidates")
    hits = (predicted_arr == target_arr).astype(float)
    out = ChoiceAccuracy(
        n=len(hits), correct=int(hits.sum()), accuracy=float(hits.mean()), chance=float((1 / k).mean())
    )
    if bootstrap is None:
        return out
    ids = _unit_ids(len(hits), units, "examples")
    per_unit = np.bincount(ids, weights=hits)
    (ci,) = bootstrap_ratios([per_unit], np.bincount(ids).astype(float), bootstrap, "units")
    return replace(out, ci=ci)
