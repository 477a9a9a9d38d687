"""Accuracy, macro-F1, macro group accuracy and sigma-inequity on hand-computed cases."""

import numpy as np
import pandas as pd
import pytest

from cuma.metrics import accuracy, group_accuracy_table, macro_f1, macro_group_accuracy, sigma_inequity


def _frame(correct: list[int], **fields: list) -> pd.DataFrame:
    """Rows answered 1; the prediction is 1 where ``correct`` and 2 otherwise."""
    predicted = [1 if c else 2 for c in correct]
    letters = {1: "A", 2: "B"}
    return pd.DataFrame(
        {
            "target_code": 1,
            "predicted_code": predicted,
            "target_letter": "A",
            "predicted_letter": [letters[p] for p in predicted],
            **fields,
        }
    )


CORRECT = [1, 1, 1, 1, 0, 0] + [1] * 5 + [0, 0] + [0, 1]
FIELDS = {
    "country": ["US"] * 6 + ["NO"] * 5 + ["DE"] * 2 + [None, None],
    "sex": ["F"] * 13 + ["M"] * 2,
    "age": ["young"] * 7 + ["old"] * 8,
}


def test_accuracy():
    assert accuracy(_frame(CORRECT)) == pytest.approx(10 / 15)


def test_macro_f1_pools_letters_across_questions():
    frame = pd.DataFrame(
        {
            "question_id": ["q1", "q1", "q2", "q2", "q3"],
            "target_letter": ["A", "A", "B", "B", "C"],
            "predicted_letter": ["A", "B", "B", "B", "A"],
        }
    )
    # F1: A = 0.5 (P 1/2, R 1/2), B = 0.8 (P 2/3, R 1), C = 0.
    assert macro_f1(frame) == pytest.approx((0.5 + 0.8 + 0) / 3)


def test_macro_group_accuracy_skips_missing_but_not_small_groups():
    # US 4/6, NO 5/5, DE 0/2; the two rows without a country are left out.
    assert macro_group_accuracy(_frame(CORRECT, **FIELDS), "country") == pytest.approx((4 / 6 + 1 + 0) / 3)


def test_sigma_inequity_skips_small_groups_and_single_group_fields():
    # country: DE (2 answers) skipped -> std(4/6, 1) = 1/6; sex: only F has >= 5 answers -> field skipped;
    # age: std(5/7, 5/8) = 5/112.
    expected = np.mean([1 / 6, 5 / 112])
    assert sigma_inequity(_frame(CORRECT, **FIELDS), ["country", "sex", "age"]) == pytest.approx(expected)


def test_sigma_inequity_min_count_is_inclusive():
    frame = _frame([1] * 5 + [0] * 5, g=["a"] * 5 + ["b"] * 5)
    assert sigma_inequity(frame, ["g"]) == pytest.approx(0.5)
    assert np.isnan(sigma_inequity(frame, ["g"], min_count=6))


def test_group_accuracy_table_counts():
    table = group_accuracy_table(_frame(CORRECT, **FIELDS), ["country"]).set_index("group")
    assert table.loc["US", "n"] == 6
    assert table.loc["DE", "accuracy"] == 0
    assert set(table.index) == {"US", "NO", "DE"}


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="country"):
        macro_group_accuracy(_frame(CORRECT), "country")
