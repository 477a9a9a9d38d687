"""Proper scores equal scikit-learn's, and the per-respondent totals reproduce every summarised metric."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import brier_score_loss
from sklearn.metrics import log_loss as sklearn_log_loss

from cuma.metrics import brier_score, log_loss, summarize
from cuma.metrics.totals import REPLICATED_METRICS, RespondentTotals
from evidence_frames import FIELDS, answers, one_hot, perfect, random_predictions


def ordinal_only(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["ordinal"]].reset_index(drop=True)


def test_log_loss_and_brier_equal_sklearn_on_one_label_set():
    predictions = random_predictions(ordinal_only(answers(30)))
    probs, labels = np.stack(predictions["probs"]), predictions["target_code"] - 1
    assert log_loss(predictions) == pytest.approx(sklearn_log_loss(labels, probs, labels=range(4)), rel=1e-12)
    expected = brier_score_loss(labels, probs, labels=range(4), scale_by_half=False)
    assert brier_score(predictions) == pytest.approx(expected, rel=1e-12)
    assert brier_score(predictions, half=True) == pytest.approx(expected / 2, rel=1e-12)


def test_a_confident_miss_costs_the_clipped_log_loss_sklearn_charges():
    frame = ordinal_only(answers(10))
    wrong = one_hot(frame, [1 if code != 1 else 2 for code in frame["target_code"]])
    probs = np.stack(wrong["probs"])
    assert log_loss(wrong) == pytest.approx(
        sklearn_log_loss(frame["target_code"] - 1, probs, labels=range(4))
    )
    assert log_loss(wrong) == pytest.approx(-np.log(np.finfo(float).eps))
    assert brier_score(wrong) == 2


def test_a_perfect_predictor_has_brier_zero_and_log_loss_zero():
    predictions = perfect(answers(12))
    assert brier_score(predictions) == 0
    assert log_loss(predictions) == pytest.approx(0, abs=1e-12)
    summary = summarize(predictions, FIELDS)
    assert summary["brier"] == 0 and summary["accuracy"] == 1


def test_summarize_reports_the_proper_scores():
    predictions = random_predictions(answers(20))
    summary = summarize(predictions, FIELDS)
    assert summary["log_loss"] == pytest.approx(log_loss(predictions))
    assert summary["brier"] == pytest.approx(brier_score(predictions))


def test_totals_with_every_respondent_once_reproduce_summarize():
    predictions = random_predictions(answers(40).sample(frac=0.85, random_state=3))
    respondents = pd.Index(sorted(predictions["respondent_id"].unique()))
    values = RespondentTotals.build(predictions, respondents, FIELDS).metrics(np.ones((1, len(respondents))))
    summary = summarize(predictions, FIELDS)
    for name in REPLICATED_METRICS:
        assert values[name][0] == pytest.approx(summary[name], abs=1e-12), name


def test_a_resample_count_vector_scores_the_frame_with_respondents_repeated():
    predictions = random_predictions(answers(30), seed=4)
    respondents = pd.Index(sorted(predictions["respondent_id"].unique()))
    counts = np.random.default_rng(5).multinomial(
        len(respondents), np.full(len(respondents), 1 / len(respondents))
    )
    values = RespondentTotals.build(predictions, respondents, FIELDS).metrics(counts[None])
    by_respondent = dict(tuple(predictions.groupby("respondent_id")))
    repeated = pd.concat(
        [by_respondent[rid] for rid, n in zip(respondents, counts, strict=True) for _ in range(n)],
        ignore_index=True,
    )
    summary = summarize(repeated, FIELDS)
    for name in REPLICATED_METRICS:
        expected = np.nan if summary[name] is None else summary[name]
        assert values[name][0] == pytest.approx(expected, abs=1e-12, nan_ok=True), name


def test_totals_refuse_a_respondent_outside_the_resampled_ones():
    predictions = random_predictions(answers(5))
    with pytest.raises(ValueError, match=r"respondent_id='r4' is not among the 4 respondents"):
        RespondentTotals.build(predictions, pd.Index(["r0", "r1", "r2", "r3"]), FIELDS)
