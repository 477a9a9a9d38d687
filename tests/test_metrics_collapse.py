"""Mean-collapse diagnostics: constant and perfect predictors bracket the behaviour."""

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon

from cuma.metrics import collapse_rate, collapse_summary, entropy_table, group_spread_table, make_predictions

TARGETS = {
    "q1": [1, 1, 1, 1, 3, 3, 3, 3],
    "q2": [2, 2, 2, 2, 2, 2, 2, 2],  # every human gave the same answer
    "q3": [1, 2, 3, 1, 2, 3, 1, 2],
}


def _answers() -> pd.DataFrame:
    rows = [
        {
            "respondent_id": i,
            "question_id": q,
            "target_code": t,
            "option_codes": [1, 2, 3],
            "option_letters": ["A", "B", "C"],
            "scale_min": 1,
            "scale_max": 3,
            "ordinal": True,
            "g": "a" if i < 4 else "b",
        }
        for q, targets in TARGETS.items()
        for i, t in enumerate(targets)
    ]
    return pd.DataFrame(rows)


def _perfect() -> pd.DataFrame:
    answers = _answers()
    return make_predictions(answers, np.eye(3)[answers["target_code"] - 1])


def _constant() -> pd.DataFrame:
    answers = _answers()
    return make_predictions(answers, [[0.2, 0.7, 0.1]] * len(answers))


def test_constant_predictor_always_collapses():
    assert collapse_rate(_constant()) == 1
    assert (entropy_table(_constant())["pred_entropy"] == 0).all()


def test_perfect_predictor_collapses_as_often_as_humans():
    summary = collapse_summary(_perfect(), ["g"], min_count=4)
    assert summary["collapse_rate"] == pytest.approx(1 / 3)
    assert summary["collapse_rate"] == summary["human_collapse_rate"]
    table = entropy_table(_perfect())
    assert table["pred_entropy"].to_numpy() == pytest.approx(table["human_entropy"].to_numpy())
    assert table.set_index("question_id").loc["q1", "human_entropy"] == pytest.approx(1.0)


def test_group_spread_by_hand():
    perfect = group_spread_table(_perfect(), ["g"], min_count=4).set_index("question_id")
    # q1: group a answered 1, group b answered 3; pooled [.5, 0, .5].
    expected = jensenshannon([1, 0, 0], [0.5, 0, 0.5], base=2)
    assert perfect.loc["q1", "human_spread"] == pytest.approx(expected)
    assert perfect["argmax_spread"].to_numpy() == pytest.approx(perfect["human_spread"].to_numpy())
    constant = group_spread_table(_constant(), ["g"], min_count=4)
    assert (constant["argmax_spread"] == 0).all()
    assert (constant["prob_spread"] == 0).all()


def test_fields_with_one_big_group_have_no_spread():
    assert group_spread_table(_perfect(), ["g"], min_count=5).empty
    assert np.isnan(collapse_summary(_perfect(), ["g"], min_count=5)["group_human_spread_js"])
