"""The paired bootstrap over respondents: pairing, pooling of runs, tests, and its refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import permutation_test

from cuma.metrics import BootstrapConfig, comparison_evidence
from cuma.metrics.bootstrap import percentile_interval, resample_counts
from cuma.metrics.paired_tests import mcnemar, sign_flip_p
from evidence_frames import FIELDS, answers, one_hot, perfect, random_predictions

SETTINGS = BootstrapConfig(resamples=400, confidence=0.95, seed=0)


def evidence(runs: dict, **kwargs):
    return comparison_evidence(runs, FIELDS, SETTINGS, floor_draws=10, **kwargs)


def test_resample_counts_draw_n_respondents_per_resample():
    counts = resample_counts(50, 30, seed=1)
    assert counts.shape == (30, 50) and (counts.sum(axis=1) == 50).all()
    assert (counts == resample_counts(50, 30, seed=1)).all() and not (
        counts == resample_counts(50, 30, 2)
    ).all()


@pytest.mark.parametrize("n", [0, 1])
def test_a_bootstrap_over_fewer_than_two_respondents_is_an_error(n):
    with pytest.raises(ValueError, match=f"at least 2 respondents, got {n}"):
        resample_counts(n, 100, seed=0)


def test_evidence_on_one_respondent_is_refused():
    frame = random_predictions(answers(1))
    with pytest.raises(ValueError, match="at least 2 respondents, got 1"):
        evidence({("lora", 0, 0): {"test": frame}, ("majority", 0, 0): {"test": frame}})


def test_identical_predictions_differ_by_exactly_zero_with_p_one():
    frame = random_predictions(answers(40))
    result = evidence({("lora", 0, 0): {"test": frame}, ("cuma", 0, 0): {"test": frame.copy()}})
    for name, difference in result.splits["test"].differences["lora"]["cuma"].items():
        assert (difference.estimate, difference.low, difference.high) == (0, 0, 0), name
        assert not difference.excludes_zero
    differences = result.splits["test"].differences["lora"]["cuma"]
    assert differences["accuracy"].p_value == 1 and differences["log_loss"].p_value == 1


def test_a_much_better_method_differs_with_an_interval_that_excludes_zero():
    frame = answers(60)
    result = evidence(
        {("lora", 0, 0): {"test": random_predictions(frame)}, ("cuma", 0, 0): {"test": perfect(frame)}}
    )
    accuracy = result.splits["test"].differences["lora"]["cuma"]["accuracy"]
    assert accuracy.excludes_zero and accuracy.low > 0 and accuracy.p_value < 1e-6
    assert accuracy.test == "McNemar mid-p"
    log_loss = result.splits["test"].differences["lora"]["cuma"]["log_loss"]
    assert log_loss.high < 0 and log_loss.p_value < 0.01


def test_the_accuracy_interval_matches_the_binomial_one_with_one_answer_each():
    frame = answers(400, questions=2)
    frame = frame[frame["question_id"] == "q0"].reset_index(drop=True)  # one ordinal answer per respondent
    result = comparison_evidence(
        {("lora", 0, 0): {"test": one_hot(frame, [1] * 400)}}, FIELDS, BootstrapConfig(2000, 0.95, 0), 10
    )
    interval = result.splits["test"].values["lora"]["accuracy"]
    p = interval.estimate
    assert interval.high - interval.low == pytest.approx(2 * 1.96 * np.sqrt(p * (1 - p) / 400), rel=0.15)
    assert interval.low < p < interval.high


def test_differences_are_paired_the_same_resamples_score_every_method():
    frame = answers(50)
    first = random_predictions(frame, seed=1)
    wrong = first.index[first["predicted_code"] != first["target_code"]][0]
    codes = first["predicted_code"].where(first.index != wrong, first["target_code"])
    second = one_hot(frame, codes)  # the same argmax answers but one, which it gets right
    split = evidence({("lora", 0, 0): {"test": first}, ("cuma", 0, 0): {"test": second}}).splits["test"]
    single = split.values["lora"]["accuracy"]
    paired = split.differences["lora"]["cuma"]["accuracy"]
    assert paired.estimate == pytest.approx(1 / len(frame))
    # Unpaired resamples would give the difference about 1.4 times a single accuracy's spread.
    assert paired.high - paired.low < 0.1 * (single.high - single.low)


def test_pooling_runs_adds_the_spread_between_seeds():
    frame = answers(60)
    good, bad = perfect(frame), random_predictions(frame, seed=2)
    one = evidence({("cuma", 0, 0): {"test": good}, ("lora", 0, 0): {"test": good}})
    two = evidence(
        {
            ("cuma", 0, 0): {"test": good},
            ("cuma", 1, 0): {"test": bad},
            ("lora", 0, 0): {"test": good},
            ("lora", 1, 0): {"test": good},
        }
    )
    width = [e.splits["test"].values["cuma"]["accuracy"] for e in (one, two)]
    assert width[0].high - width[0].low == 0  # a perfect predictor in every resample
    assert width[1].high - width[1].low > 0.3  # one seed perfect, one random: the pooled interval holds both
    assert two.splits["test"].values["cuma"]["accuracy"].estimate == pytest.approx(
        (1 + (bad["predicted_code"] == bad["target_code"]).mean()) / 2
    )
    assert two.runs == [{"seed": 0, "data_seed": 0}, {"seed": 1, "data_seed": 0}]


def test_data_seeds_resample_their_own_respondents():
    first, second = answers(30, seed=1), answers(40, seed=2, prefix="s")
    runs = {}
    for data_seed, frame in ((0, first), (1, second)):
        runs["lora", 0, data_seed] = {"test": random_predictions(frame, seed=data_seed)}
        runs["majority", 0, data_seed] = {"test": random_predictions(frame, seed=9)}
    result = evidence(runs)
    assert result.splits["test"].respondents == 70 and result.splits["test"].answers == len(first) + len(
        second
    )


def test_a_method_missing_a_run_or_scoring_other_rows_is_named():
    frame = answers(10)
    with pytest.raises(ValueError, match=r"method 'cuma' has no predictions for .* \(1, 0\)"):
        evidence(
            {
                ("lora", 0, 0): {"test": random_predictions(frame)},
                ("lora", 1, 0): {"test": random_predictions(frame)},
                ("cuma", 0, 0): {"test": random_predictions(frame)},
            }
        )
    with pytest.raises(
        ValueError, match=r"test predictions of 'cuma' .* are not the answers the other methods"
    ):
        evidence(
            {
                ("lora", 0, 0): {"test": random_predictions(frame)},
                ("cuma", 0, 0): {"test": random_predictions(frame.iloc[1:])},
            }
        )


def test_gains_are_signed_so_that_better_than_the_reference_is_positive():
    frame = answers(60)
    result = evidence(
        {("majority", 0, 0): {"test": random_predictions(frame)}, ("cuma", 0, 0): {"test": perfect(frame)}}
    )
    gains = result.splits["test"].gains["majority"]["cuma"]
    assert gains["log_loss"].estimate > 0 and gains["brier"].estimate > 0 and gains["accuracy"].estimate > 0
    raw = result.splits["test"].differences["majority"]["cuma"]
    assert gains["log_loss"].estimate == pytest.approx(-raw["log_loss"].estimate)
    assert gains["accuracy"].estimate == pytest.approx(raw["accuracy"].estimate)


def test_mcnemar_p_values_equal_the_binomial_by_hand():
    first = np.array([True] * 1 + [False] * 5 + [True] * 4)  # 1 only-first, 5 only-second, 4 both right
    second = np.array([False] * 1 + [True] * 5 + [True] * 4)
    result = mcnemar(first, second)
    assert (result.only_first, result.only_second) == (1, 5)
    assert result.exact_p == pytest.approx(2 * (1 + 6) / 64)  # 2 P(X <= 1), X ~ Bin(6, 1/2)
    assert result.mid_p == pytest.approx(2 * (1 + 6) / 64 - 6 / 64)  # less P(X = 1)
    assert mcnemar(first, first).mid_p == 1


def test_sign_flip_p_value_is_exact_for_few_respondents():
    differences = np.array([0.5, -0.2, 0.3, 0.4, 0.1])
    signs = np.array(np.meshgrid(*[[-1, 1]] * 5)).reshape(5, -1).T
    sums = (signs * differences).sum(axis=1)
    expected = np.mean(np.abs(sums) >= differences.sum() - 1e-12)
    assert sign_flip_p(differences, 1000, seed=0) == pytest.approx(expected)
    assert sign_flip_p(np.zeros(5), 1000, seed=0) == 1


def test_sign_flip_p_value_agrees_with_scipys_permutation_test():
    differences = np.random.default_rng(3).normal(0.3, 1.0, size=40)
    reference = permutation_test(
        (differences,), lambda x, axis: x.sum(axis=axis), permutation_type="samples", n_resamples=20000, rng=0
    )
    assert sign_flip_p(differences, 20000, seed=1) == pytest.approx(reference.pvalue, abs=0.01)


def test_percentile_interval_skips_undefined_replicates():
    assert percentile_interval(np.array([np.nan, np.nan]), 0.9) == (None, None)
    low, high = percentile_interval(np.array([np.nan, *range(101)]), 0.9)
    assert (low, high) == pytest.approx((5, 95))


def test_evidence_is_frozen_data():
    frame = random_predictions(answers(8))
    result = evidence({("lora", 0, 0): {"test": frame}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.seed = 3
    assert isinstance(result.splits["test"].values["lora"]["accuracy"].estimate, float)
    assert set(result.splits["test"].values["lora"]) >= {"log_loss", "prob_js_group_mean"}
    assert not result.splits["test"].floors  # no survey, no floors
