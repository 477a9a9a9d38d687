"""The comparison's evidence: every table metric with an interval, paired differences, tests, noise floors.

Input: each run's predictions, keyed by ``(method, training seed, data seed)``. Within a data seed every
method scores the same respondents, and one set of bootstrap resample counts over those respondents
(`cuma.metrics.bootstrap`) serves every method and training seed, so differences are paired.

Two sources of spread, combined by pooling: replicate b of the pooled bootstrap comes from run
``b % runs`` (runs = every (training seed, data seed) pair, in order), i.e. that run's predictions under
that data seed's b-th respondent resample. The pooled replicates are then a mixture with equal weight per
run, and their variance is the mean within-run (respondent) bootstrap variance plus the variance between
runs (the law of total variance). The interval is their percentile interval around the mean over runs.
It is the spread of one run with a fresh training seed and data sample, so with several runs it is
wider than an interval for the mean over runs would be: conservative on purpose. With one run it is the
plain paired bootstrap.

Tests per run: McNemar's mid-p (accuracy) and a sign-flip permutation test over respondents (log-loss);
with several runs the reported p-value is the largest over runs (an intersection-union test: small only
when every run's difference is).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cuma.metrics.bootstrap import BootstrapConfig, percentile_interval, resample_counts, run_of_replicate
from cuma.metrics.emd import argmax_emd, emd_summary
from cuma.metrics.noise_floor import FLOOR_METRICS, floor_samples
from cuma.metrics.paired_tests import mcnemar, sign_flip_p
from cuma.metrics.totals import REPLICATED_METRICS, RespondentTotals

RunKey = tuple[str, int, int]
"""A run: (method, training seed, data seed)."""

DIFFERENCE_BASELINES = ("lora", "majority")
"""Every method's paired difference is taken against these (where they ran)."""

GAIN_REFERENCES = {"majority": "population majority", "cell-majority": "cell distribution"}
"""The references of the proper-score gains, and how the report names them."""

GAIN_METRICS = {"log_loss": -1, "brier": -1, "accuracy": 1}
"""Gain metrics and their sign: gain = sign x (method - reference), so a positive gain is better."""

TESTS = {"accuracy": "McNemar mid-p", "log_loss": "sign-flip permutation over respondents"}
"""The paired test behind each tested metric's p-value (the sign-flip test draws as many random flips as
the bootstrap draws resamples)."""


@dataclass(frozen=True)
class Interval:
    """A metric's estimate (mean over runs) and its pooled bootstrap interval; None where undefined."""

    estimate: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Difference:
    """A paired difference (or gain) with its interval, whether that excludes 0, and its test's p-value.

    ``p_value`` and ``test`` are set for accuracy and log-loss (`TESTS`), else None.
    """

    estimate: float | None
    low: float | None
    high: float | None
    excludes_zero: bool
    p_value: float | None = None
    test: str | None = None


@dataclass(frozen=True)
class NoiseFloor:
    """The group-truth predictor's score (`cuma.metrics.noise_floor`).

    Attributes:
        observed: on the real test answers (mean over data seeds).
        mean: mean over the simulated test samples.
        low, high: their central percentile interval.
        draws: simulated samples per data seed.
    """

    observed: float | None
    mean: float | None
    low: float | None
    high: float | None
    draws: int


@dataclass(frozen=True)
class SplitEvidence:
    """One scored split's evidence.

    Attributes:
        respondents: respondents resampled, summed over data seeds.
        answers: answers per run, summed over data seeds.
        values: method -> metric (`REPLICATED_METRICS`) -> interval.
        differences: baseline (`DIFFERENCE_BASELINES`) -> method -> metric -> method minus baseline.
        gains: reference (`GAIN_REFERENCES`) -> method -> metric (`GAIN_METRICS`) -> gain over it.
        floors: metric (`FLOOR_METRICS`) -> noise floor; empty without the survey.
    """

    respondents: int
    answers: int
    values: dict[str, dict[str, Interval]]
    differences: dict[str, dict[str, dict[str, Difference]]]
    gains: dict[str, dict[str, dict[str, Difference]]]
    floors: dict[str, NoiseFloor]


@dataclass(frozen=True)
class Evidence:
    """Every split's evidence and how it was computed.

    Attributes:
        resamples: bootstrap resamples (pooled over runs).
        confidence: coverage of every interval.
        seed: seed of the resamples, permutations and noise-floor draws.
        runs: the pooled runs, each ``{"seed": training seed, "data_seed": data seed}``.
        splits: split -> its evidence.
    """

    resamples: int
    confidence: float
    seed: int
    runs: list[dict[str, int]]
    splits: dict[str, SplitEvidence]


def comparison_evidence(
    predictions: Mapping[RunKey, Mapping[str, pd.DataFrame]],
    group_fields: Sequence[str],
    bootstrap: BootstrapConfig,
    floor_draws: int,
    population: pd.DataFrame | None = None,
    min_count: int = 5,
) -> Evidence:
    """The evidence of a comparison (see the module docstring).

    Args:
        predictions: (method, training seed, data seed) -> split -> predictions DataFrame; every method
            needs every (training seed, data seed) run and, per data seed, the same answer rows.
        group_fields, min_count: as given to `cuma.metrics.summarize`.
        bootstrap: resamples, confidence and seed.
        floor_draws: simulated test samples per data seed behind the noise floors.
        population: `cuma.metrics.noise_floor.population_frame` of the whole survey; None: no floors.
    """
    if not predictions:
        raise ValueError("no predictions to compute evidence from")
    runs = sorted({(seed, data_seed) for _, seed, data_seed in predictions})
    methods = list(dict.fromkeys(method for method, _, _ in predictions))
    for method in methods:
        missing = [run for run in runs if (method, *run) not in predictions]
        if missing:
            raise ValueError(
                f"method {method!r} has no predictions for (training seed, data seed) {missing[0]}; every "
                f"method needs every run of {runs}"
            )
    splits = list(dict.fromkeys(split for frames in predictions.values() for split in frames))
    settings = _Settings(group_fields, bootstrap, floor_draws, population, min_count)
    result = {}
    for position, split in enumerate(splits):
        if all(split in predictions[method, *run] for method in methods for run in runs):
            frames = {(method, *run): predictions[method, *run][split] for method in methods for run in runs}
            result[split] = _split_evidence(frames, methods, runs, split, position, settings)
    return Evidence(
        resamples=bootstrap.resamples,
        confidence=bootstrap.confidence,
        seed=bootstrap.seed,
        runs=[{"seed": seed, "data_seed": data_seed} for seed, data_seed in runs],
        splits=result,
    )


@dataclass(frozen=True)
class _Settings:
    """The arguments of `comparison_evidence` every split shares."""

    group_fields: Sequence[str]
    bootstrap: BootstrapConfig
    floor_draws: int
    population: pd.DataFrame | None
    min_count: int


@dataclass
class _Replicates:
    """One method's numbers on a split: per run its metric values, totals, and the pooled replicates."""

    points: dict[tuple[int, int], dict[str, float]]
    totals: dict[tuple[int, int], RespondentTotals]
    pooled: dict[str, np.ndarray]


def _split_evidence(
    frames: Mapping[RunKey, pd.DataFrame],
    methods: list[str],
    runs: list[tuple[int, int]],
    split: str,
    position: int,
    settings: _Settings,
) -> SplitEvidence:
    """One split's evidence; ``position`` (the split's place) keeps the splits' resamples apart."""
    bootstrap = settings.bootstrap
    data_seeds = list(dict.fromkeys(data_seed for _, data_seed in runs))
    firsts = {d: frames[methods[0], *next(run for run in runs if run[1] == d)] for d in data_seeds}
    respondents, counts = {}, {}
    for data_seed, first in firsts.items():
        _check_same_rows(frames, methods, [run for run in runs if run[1] == data_seed], first, split)
        respondents[data_seed] = pd.Index(sorted(first["respondent_id"].unique()))
        seed = np.random.SeedSequence([bootstrap.seed, data_seed, position])
        counts[data_seed] = resample_counts(len(respondents[data_seed]), bootstrap.resamples, seed)
    owner = run_of_replicate(bootstrap.resamples, len(runs))
    numbers: dict[str, _Replicates] = {}
    for method in methods:
        entry = _Replicates(
            {}, {}, {name: np.full(bootstrap.resamples, np.nan) for name in REPLICATED_METRICS}
        )
        for index, run in enumerate(runs):
            frame = frames[method, *run]
            totals = RespondentTotals.build(
                frame, respondents[run[1]], settings.group_fields, settings.min_count
            )
            entry.totals[run], entry.points[run] = totals, _points(frame, totals)
            mine = owner == index
            if mine.any():
                for name, values in totals.metrics(counts[run[1]][mine]).items():
                    entry.pooled[name][mine] = values
        numbers[method] = entry
    confidence = bootstrap.confidence
    values = {
        method: {
            name: Interval(
                _mean(p[name] for p in entry.points.values()),
                *percentile_interval(entry.pooled[name], confidence),
            )
            for name in REPLICATED_METRICS
        }
        for method, entry in numbers.items()
    }
    tests = _Tests(numbers, runs, bootstrap)
    signs = dict.fromkeys(REPLICATED_METRICS, 1)
    return SplitEvidence(
        respondents=sum(len(index) for index in respondents.values()),
        answers=sum(len(first) for first in firsts.values()),
        values=values,
        differences=_against(numbers, DIFFERENCE_BASELINES, signs, confidence, tests),
        gains=_against(numbers, GAIN_REFERENCES, GAIN_METRICS, confidence, tests),
        floors=_floors(firsts, settings, position) if settings.population is not None else {},
    )


def _against(
    numbers: Mapping[str, _Replicates],
    others: Sequence[str],
    signs: Mapping[str, int],
    confidence: float,
    tests: _Tests,
) -> dict[str, dict[str, dict[str, Difference]]]:
    """Other (that ran) -> method -> metric -> sign x (method - other), paired."""
    return {
        other: {
            method: {
                name: _difference(entry, numbers[other], name, sign, confidence, tests.p(method, other, name))
                for name, sign in signs.items()
            }
            for method, entry in numbers.items()
            if method != other
        }
        for other in others
        if other in numbers
    }


def _floors(firsts: Mapping[int, pd.DataFrame], settings: _Settings, position: int) -> dict[str, NoiseFloor]:
    """The noise floors, their simulated samples pooled over data seeds."""
    if not settings.group_fields:
        return {}
    samples = [
        floor_samples(
            first,
            settings.population,
            settings.group_fields,
            settings.min_count,
            settings.floor_draws,
            np.random.SeedSequence([settings.bootstrap.seed, data_seed, position, 1]),
        )
        for data_seed, first in firsts.items()
    ]
    floors = {}
    for name in FLOOR_METRICS:
        simulated = np.concatenate([sample[name].simulated for sample in samples])
        low, high = percentile_interval(simulated, settings.bootstrap.confidence)
        observed = _mean(sample[name].observed for sample in samples)
        floors[name] = NoiseFloor(observed, _mean(simulated), low, high, settings.floor_draws)
    return floors


def _check_same_rows(
    frames: Mapping[RunKey, pd.DataFrame],
    methods: list[str],
    runs: list[tuple[int, int]],
    first: pd.DataFrame,
    split: str,
) -> None:
    """Every method of a data seed scored the same (respondent, question) rows: the pairing needs it."""
    expected = _row_keys(first)
    for method in methods:
        for run in runs:
            keys = _row_keys(frames[method, *run])
            if not keys.equals(expected):
                raise ValueError(
                    f"{split} predictions of {method!r} (seed {run[0]}, data seed {run[1]}) are not the "
                    f"answers the other methods scored ({len(keys)} rows, {len(expected)} expected); paired "
                    "evidence needs the same (respondent, question) rows"
                )


def _row_keys(frame: pd.DataFrame) -> pd.MultiIndex:
    keys = pd.MultiIndex.from_frame(frame[["respondent_id", "question_id"]].astype(str))
    if keys.has_duplicates:
        respondent, question = keys[keys.duplicated()][0]
        raise ValueError(f"predictions have two rows for respondent {respondent!r}, question {question!r}")
    return keys.sort_values()


class _Tests:
    """The paired tests of a split, run per (training seed, data seed) and cached per method pair."""

    def __init__(
        self, numbers: Mapping[str, _Replicates], runs: list[tuple[int, int]], bootstrap: BootstrapConfig
    ):
        self.numbers, self.runs, self.bootstrap = numbers, runs, bootstrap
        self.cache: dict[tuple[str, str, str], float] = {}

    def p(self, method: str, other: str, metric: str) -> float | None:
        """The largest p-value over runs of ``metric``'s test (None for untested metrics)."""
        if metric not in TESTS:
            return None
        first, second = sorted((method, other))
        key = (first, second, metric)
        if key not in self.cache:
            self.cache[key] = max(self._run_p(first, second, metric, run) for run in self.runs)
        return self.cache[key]

    def _run_p(self, method: str, other: str, metric: str, run: tuple[int, int]) -> float:
        first = self.numbers[method].totals[run].scores.sort_index()
        second = self.numbers[other].totals[run].scores.sort_index()
        if metric == "accuracy":
            return mcnemar(first["correct"].to_numpy() > 0, second["correct"].to_numpy() > 0).mid_p
        per_respondent = (first["log_loss"] - second["log_loss"]).groupby(level="respondent_id").sum()
        pair = zlib.crc32(f"{method}|{other}".encode())
        seed = np.random.SeedSequence([self.bootstrap.seed, run[0], run[1], pair])
        return sign_flip_p(per_respondent.to_numpy(), self.bootstrap.resamples, seed)


def _points(frame: pd.DataFrame, totals: RespondentTotals) -> dict[str, float]:
    """The run's metric values: the totals with every respondent once, and the WorldValuesBench EMD
    numbers from `cuma.metrics.emd` itself (a per-question EMD on a coverage threshold must fall on the
    side `summarize` puts it)."""
    points = {
        name: float(values[0])
        for name, values in totals.metrics(np.ones((1, totals.matrix.shape[0]))).items()
    }
    emd = emd_summary(argmax_emd(frame))
    points["wvb_argmax_emd_mean"], points["wvb_argmax_emd_auc_norm"] = emd["mean"], emd["auc_norm"]
    return points


def _difference(
    method: _Replicates, other: _Replicates, name: str, sign: int, confidence: float, p_value: float | None
) -> Difference:
    estimate = _mean(sign * (method.points[run][name] - other.points[run][name]) for run in method.points)
    low, high = percentile_interval(sign * (method.pooled[name] - other.pooled[name]), confidence)
    excludes = low is not None and high is not None and (low > 0 or high < 0)
    return Difference(
        estimate, low, high, excludes, p_value, TESTS.get(name) if p_value is not None else None
    )


def _mean(values: object) -> float | None:
    finite = [float(v) for v in np.ravel(np.fromiter(values, dtype=float)) if math.isfinite(v)]
    return float(np.mean(finite)) if finite else None
