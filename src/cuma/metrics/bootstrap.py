"""The paired bootstrap over units: resample counts, and percentile intervals of replicates.

The unit resampled is what makes answers dependent: a survey respondent (all their answers together), a
preference prompt (every verdict on it). Every method of a comparison is scored on the same units with
the same resample counts, so the replicates of a difference between two methods are differences of
paired replicates. Survey evidence (cuma/metrics/evidence.py) and preference metrics
(cuma/metrics/preference.py) both resample through `resample_counts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BootstrapConfig:
    """Settings of the percentile bootstrap.

    Attributes:
        resamples: resamples of the units, drawn with replacement (>= 2).
        confidence: the interval's coverage, in (0, 1).
        seed: seed of the resampling, so reports are reproducible.
    """

    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if self.resamples < 2:
            raise ValueError(f"bootstrap resamples must be >= 2, got {self.resamples}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"bootstrap confidence must be in (0, 1), got {self.confidence}")


def resample_counts(
    n: int, resamples: int, seed: int | np.random.SeedSequence, unit: str = "respondents"
) -> np.ndarray:
    """[resamples, n] counts: how often each of ``n`` units is drawn in each resample of n draws.

    Raises:
        ValueError: fewer than 2 units (every resample would be the sample itself).
    """
    if n < 2:
        raise ValueError(f"a bootstrap needs at least 2 {unit}, got {n}")
    if resamples < 2:
        raise ValueError(f"a bootstrap needs at least 2 resamples, got {resamples}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1 / n), size=resamples)


def bootstrap_ratios(
    numerators: Sequence[Sequence[float]],
    denominator: Sequence[float],
    config: BootstrapConfig,
    unit: str = "units",
) -> list[tuple[float, float]]:
    """Percentile intervals of ``sum(numerator) / sum(denominator)`` over units resampled with replacement.

    Every numerator [U] shares the same resamples of the U units, so paired statistics stay paired.
    """
    denominator = np.asarray(denominator, dtype=float)
    numerators = [np.asarray(numerator, dtype=float) for numerator in numerators]
    if any(numerator.shape != denominator.shape for numerator in numerators) or (denominator <= 0).any():
        raise ValueError(f"bootstrap needs numerators of shape {denominator.shape} and positive denominators")
    counts = resample_counts(len(denominator), config.resamples, config.seed, unit)
    total = counts @ denominator
    replicates = [counts @ numerator / total for numerator in numerators]
    intervals = [percentile_interval(values, config.confidence) for values in replicates]
    return [(float(low), float(high)) for low, high in intervals]


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    """The central ``confidence`` percentile interval of the finite replicates; None when there are none.

    Replicates are NaN where a metric is undefined in that resample (e.g. sigma-inequity when a
    resample leaves one group); those are left out.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    finite = np.asarray(replicates, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return None, None
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def run_of_replicate(resamples: int, runs: int) -> np.ndarray:
    """Which run each replicate comes from when several runs (training seeds, data samples) are pooled.

    Replicate b uses run ``b % runs``: each run contributes an equal share of the pooled replicates, so
    their spread is the within-run (respondent) spread plus the spread between runs.
    """
    return np.arange(resamples) % runs
