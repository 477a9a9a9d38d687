"""Paired significance tests of two methods scored on the same answers.

McNemar's test compares accuracies from the answers exactly one method gets right; the sign-flip
permutation test compares mean log-losses with respondents as the exchangeable units. Both answer "could
this difference be chance?" for one run; the bootstrap intervals (`cuma.metrics.bootstrap`) give its size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binom, binomtest


@dataclass(frozen=True)
class McNemar:
    """McNemar's test on paired right/wrong outcomes.

    Attributes:
        only_first: answers the first method gets right and the second wrong.
        only_second: answers the second gets right and the first wrong.
        exact_p: two-sided exact binomial p-value on the discordant answers.
        mid_p: the mid-p variant (the exact p less the probability of the observed count), less
            conservative and closer to nominal size (Fagerland, Lydersen and Laake 2013); the report uses it.
    """

    only_first: int
    only_second: int
    exact_p: float
    mid_p: float


def mcnemar(first_correct: np.ndarray, second_correct: np.ndarray) -> McNemar:
    """McNemar's exact and mid-p tests, each answer one pair (a respondent's answers taken as independent)."""
    first, second = np.asarray(first_correct, dtype=bool), np.asarray(second_correct, dtype=bool)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(
            f"McNemar needs two outcome vectors of one shape, got {first.shape} and {second.shape}"
        )
    b, c = int((first & ~second).sum()), int((~first & second).sum())
    n, k = b + c, min(b, c)
    if n == 0:
        return McNemar(b, c, 1.0, 1.0)
    exact = float(binomtest(k, n, 0.5).pvalue)
    mid = float(min(1.0, 2 * binom.cdf(k, n, 0.5) - binom.pmf(k, n, 0.5)))
    return McNemar(b, c, exact, mid)


def sign_flip_p(differences: np.ndarray, resamples: int, seed: int | np.random.SeedSequence) -> float:
    """Two-sided p-value of a paired permutation test that the per-unit ``differences`` centre on zero.

    Under the null each respondent's difference (their summed per-answer loss difference) is as likely
    to have either sign, so ``|sum|`` is compared with ``|sum|`` under sign flips: every flip when
    ``2**units <= resamples`` (exact), else ``resamples`` random ones, with p = (1 + extreme) /
    (1 + resamples) (Phipson and Smyth 2010). ``scipy.stats.permutation_test`` with one sample does the
    same, but is an order of magnitude slower at thousands of respondents.
    """
    differences = np.asarray(differences, dtype=float)
    if differences.ndim != 1 or len(differences) < 2:
        raise ValueError(f"a sign-flip test needs at least 2 units, got {differences.shape}")
    observed = abs(differences.sum())
    tolerance = 1e-12 * max(1.0, np.abs(differences).sum())  # flips equal to the data up to rounding count
    n = len(differences)
    if 2**n <= resamples:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        return float(np.mean(np.abs(signs @ differences) >= observed - tolerance))
    rng = np.random.default_rng(seed)
    extreme = 0
    for start in range(0, resamples, 1000):
        signs = rng.choice([-1.0, 1.0], size=(min(1000, resamples - start), n))
        extreme += int((np.abs(signs @ differences) >= observed - tolerance).sum())
    return (1 + extreme) / (1 + resamples)
