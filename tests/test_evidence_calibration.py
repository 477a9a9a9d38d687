"""Calibration rows: they know nothing about the person, and show which metrics reward the marginals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cuma.metrics import make_predictions, summarize
from cuma.reference_baselines import (
    CALIBRATION_BASELINES,
    BaselineConfig,
    always_first,
    random_draw,
    shuffled_truth,
)
from evidence_frames import FIELDS, GROUP_SHARES, answers


@pytest.fixture(scope="module")
def splits() -> tuple[pd.DataFrame, pd.DataFrame]:
    return answers(600, seed=1, prefix="train"), answers(600, seed=2)


@pytest.mark.parametrize("name", sorted(CALIBRATION_BASELINES))
def test_calibration_rows_put_probability_one_on_their_answer(splits, name):
    train, test = splits
    predictions = CALIBRATION_BASELINES[name](train, test, FIELDS, BaselineConfig(seed=3))
    probs = np.stack([np.pad(p, (0, 4 - len(p))) for p in predictions["probs"]])
    assert ((probs == 0) | (probs == 1)).all() and (probs.sum(axis=1) == 1).all()
    chosen = [
        list(o)[int(np.argmax(p))]
        for o, p in zip(predictions["option_codes"], predictions["probs"], strict=True)
    ]
    assert list(predictions["predicted_code"]) == chosen  # the schema's argmax is the answer given
    again = CALIBRATION_BASELINES[name](train, test, FIELDS, BaselineConfig(seed=3))
    assert list(again["predicted_code"]) == chosen


def test_shuffled_truth_matches_every_marginal_at_chance_accuracy(splits):
    train, test = splits
    predictions = shuffled_truth(train, test, FIELDS, BaselineConfig(seed=0))
    summary = summarize(predictions, FIELDS)
    assert summary["wvb_argmax_emd_mean"] == 0 and summary["wvb_argmax_emd_auc_norm"] == pytest.approx(1)
    assert summary["prob_emd_mean"] == pytest.approx(0, abs=1e-12) and summary["collapse_rate"] == 0
    chance = test.groupby("question_id")["target_code"].apply(
        lambda a: (a.value_counts(normalize=True) ** 2).sum()
    )
    counts = test["question_id"].value_counts()
    assert summary["accuracy"] == pytest.approx((chance * counts).sum() / counts.sum(), abs=0.03)
    assert summary["log_loss"] > 20  # a point forecast that misses costs -log(eps)


def test_random_draw_follows_the_training_distribution(splits):
    train, test = splits
    predictions = random_draw(train, test, FIELDS, BaselineConfig(seed=0))
    q0 = predictions[predictions["question_id"] == "q0"]
    drawn = q0["predicted_code"].value_counts(normalize=True).sort_index().to_numpy()
    shares = train[train["question_id"] == "q0"]["target_code"].value_counts(normalize=True).sort_index()
    assert drawn == pytest.approx(shares.to_numpy(), abs=0.06)
    other = random_draw(train, test, FIELDS, BaselineConfig(seed=1))
    assert (other["predicted_code"] != predictions["predicted_code"]).any()


def test_random_draw_does_not_depend_on_the_order_of_the_questions(splits):
    train, test = splits

    def draws(frame: pd.DataFrame) -> dict[str, list[int]]:
        predictions = random_draw(train, frame, FIELDS, BaselineConfig(seed=0))
        return {q: sorted(rows["predicted_code"]) for q, rows in predictions.groupby("question_id")}

    last_first = pd.concat([test[test["question_id"] == "q5"], test[test["question_id"] != "q5"]])
    assert draws(test) == draws(last_first)


def test_always_first_answers_the_first_option(splits):
    train, test = splits
    predictions = always_first(train, test, FIELDS)
    assert list(predictions["predicted_code"]) == [options[0] for options in test["option_codes"]]
    assert summarize(predictions, FIELDS)["collapse_rate"] == 1


def test_the_marginal_metrics_reward_the_calibration_rows_the_proper_scores_do_not(splits):
    train, test = splits
    shuffled = summarize(shuffled_truth(train, test, FIELDS, BaselineConfig(seed=0)), FIELDS)
    group_truth = [
        GROUP_SHARES[c] if o else [1 / 3] * 3 for c, o in zip(test["country"], test["ordinal"], strict=True)
    ]
    knowing = summarize(make_predictions(test, group_truth), FIELDS)
    assert shuffled["wvb_argmax_emd_mean"] < knowing["wvb_argmax_emd_mean"]  # EMD prefers the control
    assert shuffled["log_loss"] > knowing["log_loss"] and shuffled["brier"] > knowing["brier"]
    assert shuffled["accuracy"] < knowing["accuracy"]
