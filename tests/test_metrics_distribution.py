"""Distributional metrics per question and group, on hand-computed cases."""

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon

from cuma.metrics import (
    POPULATION,
    distribution_table,
    js_distance,
    make_predictions,
    ordinal_emd,
    total_variation,
)


def _answers(targets: list[int], ordinal: bool = True, **fields: list) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "respondent_id": range(len(targets)),
            "question_id": "q",
            "target_code": targets,
            "option_codes": [[1, 2, 3]] * len(targets),
            "option_letters": [["A", "B", "C"]] * len(targets),
            "scale_min": 1,
            "scale_max": 3,
            "ordinal": ordinal,
            **fields,
        }
    )


def test_js_distance_matches_scipy_and_is_zero_for_equal():
    rng = np.random.default_rng(0)
    for _ in range(5):
        p, q = rng.dirichlet(np.ones(4)), rng.dirichlet(np.ones(4))
        assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2))
    p = rng.dirichlet(np.ones(7))
    assert js_distance(p, p) == 0
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1)


def test_total_variation_and_ordinal_emd_by_hand():
    assert total_variation([0.5, 0.5, 0], [0, 0.5, 0.5]) == pytest.approx(0.5)
    codes = np.array([1, 2, 3])
    assert ordinal_emd([1, 0, 0], [0, 0, 1], codes, 1, 3) == pytest.approx(1)
    assert ordinal_emd([1, 0, 0], [0, 1, 0], codes, 1, 3) == pytest.approx(0.5)


def test_table_per_group_by_hand():
    # Everyone gets probs [.5, .5, 0] (argmax: option 1); group a answered 1, group b answered 3.
    answers = _answers([1, 1, 1, 3, 3, 3], g=["a"] * 3 + ["b"] * 3)
    table = distribution_table(make_predictions(answers, [[0.5, 0.5, 0]] * 6), ["g"], min_count=3)
    rows = table.set_index("group")
    assert list(rows.index) == [POPULATION, "a", "b"]
    # Population: human [.5, 0, .5] vs predicted [.5, .5, 0] on positions 0, .5, 1.
    assert rows.loc[POPULATION, "prob_tv"] == pytest.approx(0.5)
    assert rows.loc[POPULATION, "prob_emd"] == pytest.approx(0.25)
    assert rows.loc[POPULATION, "argmax_emd"] == pytest.approx(0.5)
    assert rows.loc["a", "prob_emd"] == pytest.approx(0.25)
    assert rows.loc["b", "prob_emd"] == pytest.approx(0.75)
    assert rows.loc["b", "prob_tv"] == pytest.approx(1.0)
    assert rows.loc["b", "argmax_js"] == pytest.approx(1.0)
    assert rows.loc["a", "argmax_tv"] == 0
    assert rows.loc["a", "prob_js"] == pytest.approx(jensenshannon([1, 0, 0], [0.5, 0.5, 0], base=2))


def test_small_and_missing_groups_are_left_out_and_nominal_has_no_emd():
    answers = _answers([1, 2, 3, 1, 2, 3], ordinal=False, g=["a"] * 5 + [None])
    table = distribution_table(make_predictions(answers, [[1 / 3] * 3] * 6), ["g"], min_count=5)
    assert list(table["group"]) == [POPULATION, "a"]
    assert table["prob_emd"].isna().all()
    assert table.loc[0, "prob_tv"] == pytest.approx(0)


def test_bad_probs_name_the_row():
    predictions = make_predictions(_answers([1, 2]), [[1, 0, 0], [0, 1, 0]])
    predictions.at[1, "probs"] = [0.5, 0.5]
    with pytest.raises(ValueError, match="row 1"):
        distribution_table(predictions, [])
