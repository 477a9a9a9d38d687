"""The paired bootstrap over respondents: resample counts, and percentile intervals of replicates.

A respondent answers several questions and those answers are not independent, so the unit resampled is
the respondent (all their answers together). Every method of a comparison is scored on the same
respondents with the same resample counts, so the replicates of a difference between two methods are
differences of paired replicates.
"""

from __future__ import annotations

import numpy as np


def resample_counts(n: int, resamples: int, seed: int | np.random.SeedSequence) -> np.ndarray:
    """[resamples, n] counts: how often each of ``n`` respondents is drawn in each resample of n draws.

    Raises:
        ValueError: fewer than 2 respondents (every resample would be the sample itself).
    """
    if n < 2:
        raise ValueError(f"a bootstrap over respondents needs at least 2 respondents, got {n}")
    if resamples < 2:
        raise ValueError(f"a bootstrap needs at least 2 resamples, got {resamples}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1 / n), size=resamples)


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
