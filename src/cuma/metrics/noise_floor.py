"""Noise floors of the group metrics: what sampling noise alone gives at the test split's group sizes.

A group's test answers are a small sample of that group, so even a predictor that knows each group's
true answer distribution (taken as the whole survey's) has a group JS above 0 and a sigma-inequity set
by which groups' samples happen to favour its answer. `floor_samples` simulates that predictor: for every
(question, field, group) of the test split it draws as many answers as the split has from the group's
survey distribution, and scores

- ``prob_js_group_mean``: the predictor gives each member the group's distribution P, so the row's JS
  distance is between P and the drawn answers' histogram (rows of >= ``min_count`` answers, as in
  `cuma.metrics.distribution.distribution_table`);
- ``sigma_inequity``: it answers each member with P's most likely option (the first on ties); group
  accuracy is the share of drawn answers equal to it, pooled over questions, and sigma-inequity is
  computed from those as `cuma.metrics.classification.sigma_inequity` does.

Each field is scored with its own groups' distributions. A method whose value is no larger than the
floor's upper percentile cannot be told apart from that predictor at this sample size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cuma.metrics.distribution import js_distances
from cuma.metrics.frame import group_values, option_index, require_columns

FLOOR_METRICS = ("prob_js_group_mean", "sigma_inequity")
"""The `cuma.metrics.summarize` keys that get a noise floor."""


@dataclass(frozen=True)
class FloorSamples:
    """A floor on one test sample: ``observed`` is the predictor scored on the real test answers,
    ``simulated`` its score on each simulated test sample (NaN where the metric is undefined)."""

    observed: float
    simulated: np.ndarray


def population_frame(
    answers: pd.DataFrame, profiles: Mapping[str, Mapping[str, object]], fields: Sequence[str]
) -> pd.DataFrame:
    """Every survey answer (``respondent_id, question_id, code``) with its respondent's ``fields``.

    ``profiles`` maps respondent id -> profile (field -> value, None when missing), as
    ``cuma.data.survey.Survey.respondents`` does.
    """
    require_columns(answers, ["respondent_id", "question_id", "code"], what="survey answers")
    table = pd.DataFrame.from_dict(
        {rid: {field: profile.get(field) for field in fields} for rid, profile in profiles.items()},
        orient="index",
        columns=list(fields),
    )
    unknown = ~answers["respondent_id"].isin(table.index)
    if unknown.any():
        row = answers.index[unknown][0]
        raise ValueError(
            f"survey answers row {row!r}: respondent_id={answers.at[row, 'respondent_id']!r} has no profile"
        )
    merged = answers[["respondent_id", "question_id", "code"]].join(table, on="respondent_id")
    return merged.rename(columns={"code": "target_code"})


def floor_samples(
    test: pd.DataFrame,
    population: pd.DataFrame,
    group_fields: Sequence[str],
    min_count: int,
    draws: int,
    seed: int | np.random.SeedSequence,
) -> dict[str, FloorSamples]:
    """Each metric of `FLOOR_METRICS` for the group-truth predictor on ``test`` (see the module docstring).

    Args:
        test: the scored split's answer rows (``question_id, target_code, option_codes`` and the fields).
        population: `population_frame` of the whole survey.
        group_fields, min_count: as given to `cuma.metrics.summarize`.
        draws: simulated test samples.
        seed: seed of the draws.
    """
    if draws < 1:
        raise ValueError(f"noise floor needs at least 1 draw, got {draws}")
    require_columns(test, ["question_id", "target_code", "option_codes", *group_fields], what="test answers")
    require_columns(population, ["question_id", "target_code", *group_fields], what="survey answers")
    rng = np.random.default_rng(seed)
    kept = max(min_count, 1)
    js_rows: list[tuple[float, np.ndarray]] = []
    sigma_fields: list[tuple[float, np.ndarray]] = []
    by_question = dict(tuple(population.groupby("question_id", sort=False)))
    for field in group_fields:
        answered: dict[object, int] = {}  # group -> its test answers over every question
        hits: dict[object, float] = {}  # group -> test answers equal to the predictor's
        simulated_hits: dict[object, np.ndarray] = {}  # group -> the same in each simulated sample
        for question, rows in test.groupby("question_id", sort=False):
            if question not in by_question:
                raise ValueError(f"question {question!r} has test answers but none in the survey")
            options = list(rows["option_codes"].iloc[0])
            survey = by_question[question]
            survey_groups = group_values(survey, field).to_numpy()
            test_groups = group_values(rows, field).to_numpy()
            answer = option_index(rows, "target_code")
            for group in pd.unique(test_groups[pd.notna(test_groups)]):
                mine = test_groups == group
                n = int(mine.sum())
                where = f"question {question!r}, {field}={group!r}"
                truth = _distribution(
                    survey["target_code"].to_numpy()[survey_groups == group], options, where
                )
                observed = np.bincount(answer[mine], minlength=len(options))
                simulated = rng.multinomial(n, truth, size=draws)
                if n >= kept:
                    js_rows.append(
                        (float(js_distances(truth, observed / n)), js_distances(truth, simulated / n))
                    )
                mode = int(np.argmax(truth))
                answered[group] = answered.get(group, 0) + n
                hits[group] = hits.get(group, 0.0) + observed[mode]
                simulated_hits[group] = simulated_hits.get(group, 0.0) + simulated[:, mode]
        large = [group for group, n in answered.items() if n >= kept]
        if len(large) > 1:
            sizes = np.array([answered[group] for group in large])
            seen = np.array([hits[group] for group in large]) / sizes
            drawn = np.stack([simulated_hits[group] for group in large], axis=1) / sizes
            sigma_fields.append((float(np.std(seen)), np.std(drawn, axis=1)))
    return {
        "prob_js_group_mean": _mean_of_rows(js_rows, draws),
        "sigma_inequity": _mean_of_rows(sigma_fields, draws),
    }


def _distribution(codes: np.ndarray, options: list, where: str) -> np.ndarray:
    """The answers' distribution over ``options`` (codes in option order)."""
    if codes.size == 0:
        raise ValueError(f"{where}: the group has test answers but none in the survey")
    index = pd.Index(options).get_indexer(codes)
    if (index < 0).any():
        raise ValueError(
            f"{where}: survey answer code {codes[index < 0][0]!r} is not among the options {options!r}"
        )
    counts = np.bincount(index, minlength=len(options))
    return counts / counts.sum()


def _mean_of_rows(rows: Sequence[tuple[float, np.ndarray]], draws: int) -> FloorSamples:
    if not rows:
        return FloorSamples(float("nan"), np.full(draws, np.nan))
    observed = float(np.mean([value for value, _ in rows]))
    return FloorSamples(observed, np.mean(np.stack([simulated for _, simulated in rows]), axis=0))
