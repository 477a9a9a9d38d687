"""summarize(): one flat JSON-ready dict that agrees with the individual metrics."""

import json

import numpy as np
import pandas as pd
import pytest

from cuma.metrics import accuracy, argmax_emd, make_predictions, sigma_inequity, summarize


def _answers(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for question in ("q1", "q2", "q3"):
        for i in range(n):
            rows.append(
                {
                    "respondent_id": i,
                    "question_id": question,
                    "target_code": int(rng.integers(1, 5)),
                    "option_codes": [1, 2, 3, 4],
                    "option_letters": ["A", "B", "C", "D"],
                    "scale_min": 1,
                    "scale_max": 4,
                    "ordinal": question != "q3",
                    "country": ["x", "y", "z", None][i % 4],
                    "sex": "f" if i % 3 else "m",
                }
            )
    return pd.DataFrame(rows)


def _random_predictions() -> pd.DataFrame:
    answers = _answers()
    return make_predictions(answers, np.random.default_rng(1).dirichlet(np.ones(4), size=len(answers)))


def test_summary_is_flat_json_and_agrees_with_parts():
    predictions = _random_predictions()
    summary = summarize(predictions, ["country", "sex"], main_group="country")
    json.dumps(summary, allow_nan=False)
    assert all(isinstance(value, int | float) or value is None for value in summary.values())
    assert summary["n_answers"] == 120 and summary["n_questions"] == 3
    assert summary["accuracy"] == pytest.approx(accuracy(predictions))
    assert summary["sigma_inequity"] == pytest.approx(sigma_inequity(predictions, ["country", "sex"]))
    assert summary["wvb_argmax_emd_mean"] == pytest.approx(np.mean(list(argmax_emd(predictions).values())))
    assert 0 <= summary["wvb_argmax_emd_auc_norm"] <= 1
    assert summary["wvb_argmax_emd_auc_pct"] == pytest.approx(60 * summary["wvb_argmax_emd_auc_norm"])


def test_perfect_predictor_summary():
    answers = _answers()
    perfect = make_predictions(answers, np.eye(4)[answers["target_code"] - 1])
    summary = summarize(perfect, ["country"])
    assert summary["accuracy"] == 1 and summary["macro_f1"] == 1
    assert summary["wvb_argmax_emd_mean"] == 0 and summary["wvb_argmax_emd_auc_norm"] == pytest.approx(1)
    assert summary["prob_js_mean"] == pytest.approx(0, abs=1e-12)
    assert summary["group_argmax_spread_js"] == pytest.approx(summary["group_human_spread_js"])
    assert summary["macro_acc"] is None


def test_undefined_numbers_become_none():
    summary = summarize(_random_predictions(), ["sex"], min_count=1000)
    assert summary["sigma_inequity"] is None
    assert summary["group_human_spread_js"] is None
