"""Win-rates (failed verdicts excluded, never ties), bootstrap intervals over prompts, group rates, CA-Acc."""

import math

import pytest

from cuma.metrics.bootstrap import BootstrapConfig, bootstrap_ratios
from cuma.metrics.preference import (
    choice_accuracy,
    group_win_rates,
    win_rate,
)


def test_failed_verdicts_are_reported_and_excluded_not_ties():
    out = win_rate(["win", "win", "loss", "tie", "failed", "failed"], bootstrap=None)
    assert (out.wins, out.losses, out.ties, out.failed, out.judged, out.units) == (2, 1, 1, 2, 4, 4)
    assert out.win_rate == 2 / 4
    assert out.tie_adjusted == (2 + 0.5) / 4  # failures as ties would give (2 + 1.5) / 6
    assert out.win_rate_ci is None


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    verdicts = ["win"] * 12 + ["loss"] * 5 + ["tie"] * 3 + ["failed"] * 2
    config = BootstrapConfig(resamples=500, seed=7)
    first, again = win_rate(verdicts, bootstrap=config), win_rate(verdicts, bootstrap=config)
    assert first.win_rate_ci == again.win_rate_ci
    other = win_rate(verdicts, bootstrap=BootstrapConfig(resamples=500, seed=8))
    assert (other.win_rate_ci, other.tie_adjusted_ci) != (first.win_rate_ci, first.tie_adjusted_ci)
    for rate, (low, high) in (
        (first.win_rate, first.win_rate_ci),
        (first.tie_adjusted, first.tie_adjusted_ci),
    ):
        assert low < rate < high
    assert first.tie_adjusted_ci[0] > first.win_rate_ci[0]
    narrow = win_rate(verdicts * 10, bootstrap=config).win_rate_ci
    assert narrow[1] - narrow[0] < first.win_rate_ci[1] - first.win_rate_ci[0]
    assert win_rate(["win"] * 5, bootstrap=config).win_rate_ci == (1.0, 1.0)


def test_bootstrap_resamples_prompts_not_verdicts():
    verdicts = ["win"] * 4 + ["loss"] * 4 + ["win", "loss"] * 2 + ["failed"]
    prompts = ["a"] * 4 + ["b"] * 4 + ["c"] * 4 + ["d"]
    config = BootstrapConfig(resamples=400, seed=0)
    by_prompt = win_rate(verdicts, units=prompts, bootstrap=config)
    by_verdict = win_rate(verdicts, bootstrap=config)
    assert by_prompt.units == 3  # prompt d has only a failed verdict
    assert by_prompt.win_rate == by_verdict.win_rate == 0.5
    assert (
        by_prompt.win_rate_ci[1] - by_prompt.win_rate_ci[0]
        > by_verdict.win_rate_ci[1] - by_verdict.win_rate_ci[0]
    )
    assert win_rate(verdicts, units=[None if p == "a" else p for p in prompts], bootstrap=config) == by_prompt
    with pytest.raises(ValueError, match="3 units for 13 verdicts"):
        win_rate(verdicts, units=prompts[:3])


def test_bootstrap_with_fewer_than_two_units_is_an_error():
    with pytest.raises(ValueError, match="a bootstrap needs at least 2 prompts with a usable verdict, got 1"):
        win_rate(["win", "failed"])
    with pytest.raises(ValueError, match="a bootstrap needs at least 2 prompts with a usable verdict, got 1"):
        win_rate(["win", "loss"], units=["p", "p"])
    assert win_rate(["win", "failed"], bootstrap=None).win_rate == 1.0
    with pytest.raises(ValueError, match="at least 2 units, got 1"):
        bootstrap_ratios([[1.0]], [1.0], BootstrapConfig())
    with pytest.raises(ValueError, match="positive denominators"):
        bootstrap_ratios([[1.0, 0.0]], [1.0, 0.0], BootstrapConfig())


def test_bad_verdicts_and_settings_are_errors():
    with pytest.raises(ValueError, match=r"verdict 1: 'a' is not one of \('win', 'loss', 'tie', 'failed'\)"):
        win_rate(["win", "a"])
    with pytest.raises(ValueError, match="no usable verdict: all 2 failed"):
        win_rate(["failed", "failed"], bootstrap=None)
    with pytest.raises(ValueError, match="no usable verdict"):
        win_rate([], bootstrap=None)
    with pytest.raises(ValueError, match="resamples must be >= 2"):
        BootstrapConfig(resamples=1)
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        BootstrapConfig(confidence=1.0)


def test_group_win_rates_per_profile_field():
    verdicts = ["win", "loss", "tie", "win", "failed", "failed", "win"]
    profiles = [
        {"gender": "f", "country": "NO"},
        {"gender": "f", "country": "NO"},
        {"gender": "m", "country": "GB"},
        {"gender": "m", "country": "GB"},
        {"gender": "x", "country": "GB"},
        {"gender": "m", "country": "GB"},
        {"gender": None, "country": "NO"},
    ]
    table = group_win_rates(verdicts, profiles, ["gender", "country"])
    rows = {(r.field, r.group): r for r in table.itertuples()}
    assert set(rows) == {
        ("gender", "f"),
        ("gender", "m"),
        ("gender", "x"),
        ("country", "NO"),
        ("country", "GB"),
    }
    f, m, x = rows["gender", "f"], rows["gender", "m"], rows["gender", "x"]
    assert (f.wins, f.losses, f.win_rate) == (1, 1, 0.5)
    assert (m.wins, m.ties, m.failed, m.win_rate, m.tie_adjusted) == (1, 1, 1, 0.5, 0.75)
    assert x.failed == 1 and math.isnan(x.win_rate)
    assert (rows["country", "NO"].wins, rows["country", "NO"].units) == (2, 3)
    with_ci = group_win_rates(verdicts[:4], profiles[:4], ["gender"], bootstrap=BootstrapConfig(resamples=50))
    assert {"win_rate_low", "win_rate_high", "tie_adjusted_low", "tie_adjusted_high"} <= set(with_ci.columns)
    with pytest.raises(ValueError, match="group gender='f': a bootstrap needs at least 2"):
        group_win_rates(verdicts[1:6], profiles[1:6], ["gender"], bootstrap=BootstrapConfig())
    with pytest.raises(KeyError, match="verdict 0: profile has no field 'age'"):
        group_win_rates(verdicts, profiles, ["age"])


def test_choice_accuracy_with_chance_and_interval():
    predicted = [0, 1, 2, 3, 0, 1, 1, 0]
    targets = [0, 1, 2, 0, 1, 0, 1, 1]
    out = choice_accuracy(predicted, targets, bootstrap=BootstrapConfig(resamples=300))
    assert (out.n, out.correct, out.accuracy, out.chance) == (8, 4, 0.5, 0.25)
    assert out.ci[0] < 0.5 < out.ci[1]
    mixed = choice_accuracy([0, 1, 1], [0, 1, 0], [4, 4, 2], bootstrap=None)
    assert mixed.chance == pytest.approx((0.25 + 0.25 + 0.5) / 3) and mixed.ci is None
    by_prompt = choice_accuracy(
        [0, 0, 1, 1], [0, 0, 0, 0], units=["a", "a", "b", "b"], bootstrap=BootstrapConfig()
    )
    assert by_prompt.accuracy == 0.5 and by_prompt.ci == (0.0, 1.0)


def test_choice_accuracy_errors():
    with pytest.raises(ValueError, match="example 1: predicted index 4 is not among its 4 candidates"):
        choice_accuracy([0, 4], [0, 1], bootstrap=None)
    with pytest.raises(ValueError, match="example 0: target index -1"):
        choice_accuracy([0, 1], [-1, 1], bootstrap=None)
    with pytest.raises(ValueError, match="non-empty and of one length"):
        choice_accuracy([0, 1], [0], bootstrap=None)
    with pytest.raises(ValueError, match="at least 2 candidates"):
        choice_accuracy([0, 0], [0, 0], 1, bootstrap=None)
    with pytest.raises(ValueError, match="a bootstrap needs at least 2 units, got 1"):
        choice_accuracy([0], [0])
