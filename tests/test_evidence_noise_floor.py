"""Noise floors: what a predictor that knows each group's distribution scores at the test sample size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cuma.metrics import make_predictions, population_frame, summarize
from cuma.metrics.noise_floor import floor_samples
from evidence_frames import answers


def survey(respondents: int = 3000) -> pd.DataFrame:
    frame = answers(respondents, seed=7, prefix="s")
    return frame.rename(columns={"target_code": "code"})[
        ["respondent_id", "question_id", "code", "country", "sex"]
    ]


def floors(test: pd.DataFrame, population: pd.DataFrame, fields: list[str], draws: int = 300) -> dict:
    return floor_samples(test, population, fields, min_count=5, draws=draws, seed=0)


@pytest.fixture(scope="module")
def population() -> pd.DataFrame:
    frame = survey()
    profiles = {
        rid: {"country": c, "sex": s}
        for rid, c, s in frame[["respondent_id", "country", "sex"]].drop_duplicates().itertuples(index=False)
    }
    return population_frame(frame[["respondent_id", "question_id", "code"]], profiles, ["country", "sex"])


def test_the_floor_is_above_zero_and_shrinks_with_the_sample(population):
    small = floors(answers(30, seed=1), population, ["country"])
    large = floors(answers(600, seed=1), population, ["country"])
    for name in ("prob_js_group_mean", "sigma_inequity"):
        assert small[name].simulated.mean() > 0, name
    assert large["prob_js_group_mean"].simulated.mean() < small["prob_js_group_mean"].simulated.mean() / 2
    assert large["sigma_inequity"].simulated.std() < small["sigma_inequity"].simulated.std()


def test_observed_floor_is_the_group_truth_predictor_scored_by_summarize(population):
    test = answers(60, seed=3)
    truth = {}
    for (question, country), rows in population.groupby(["question_id", "country"]):
        options = test.loc[test["question_id"] == question, "option_codes"].iloc[0]
        truth[question, country] = (
            rows["target_code"].value_counts(normalize=True).reindex(options, fill_value=0).to_numpy()
        )
    probs = [truth[q, c] for q, c in zip(test["question_id"], test["country"], strict=True)]
    knowing = summarize(make_predictions(test, probs), ["country"])
    result = floors(test, population, ["country"])
    assert result["prob_js_group_mean"].observed == pytest.approx(knowing["prob_js_group_mean"])
    assert result["sigma_inequity"].observed == pytest.approx(knowing["sigma_inequity"])


def test_a_test_group_the_survey_lacks_is_named(population):
    test = answers(12, seed=3)
    test.loc[0, "country"] = "atlantis"
    with pytest.raises(
        ValueError, match=r"question 'q0', country='atlantis': the group has test answers but none"
    ):
        floors(test, population, ["country"], draws=2)


def test_population_frame_needs_every_respondents_profile():
    answers_ = pd.DataFrame({"respondent_id": ["a", "b"], "question_id": ["q", "q"], "code": [1, 2]})
    frame = population_frame(answers_, {"a": {"sex": "f"}, "b": {"sex": None}}, ["sex"])
    assert list(frame["target_code"]) == [1, 2] and frame["sex"].isna().tolist() == [False, True]
    with pytest.raises(ValueError, match=r"survey answers row 1: respondent_id='b' has no profile"):
        population_frame(answers_, {"a": {"sex": "f"}}, ["sex"])


def test_undefined_floors_are_nan_not_zero(population):
    test = answers(3, seed=1).query("question_id in ['q0', 'q1']")  # 2 answers a group: too few
    result = floors(test, population, ["country"], draws=5)
    assert (
        np.isnan(result["prob_js_group_mean"].observed) and np.isnan(result["sigma_inequity"].simulated).all()
    )
