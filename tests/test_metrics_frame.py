"""The predictions schema: what `make_predictions` builds and what `require_columns` asks for."""

import pandas as pd
import pytest

from cuma.metrics import PREDICTION_COLUMNS, PREDICTION_INPUT_COLUMNS, PREDICTIONS_SCHEMA, make_predictions
from cuma.metrics.frame import require_columns


def answers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "country": ["NO", None],
            "respondent_id": ["r1", "r2"],
            "question_id": ["q1", "q1"],
            "target_code": [2, 3],
            "option_codes": [[1, 2, 3]] * 2,
            "option_letters": [["A", "B", "C"]] * 2,
            "scale_min": [1, 1],
            "scale_max": [3, 3],
            "ordinal": [True, True],
        }
    )


def test_predictions_have_the_schema_columns_first_then_the_profile_fields():
    frame = make_predictions(answers(), [[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]])
    assert list(frame.columns) == [*PREDICTION_COLUMNS, "country"]
    assert frame["predicted_code"].tolist() == [2, 1]  # the first option wins a tie
    assert frame["target_letter"].tolist() == ["B", "C"]
    assert frame["predicted_letter"].tolist() == ["B", "A"]
    require_columns(frame)  # the whole schema is there


def test_derived_columns_are_not_asked_of_the_answers():
    derived = {"predicted_code", "target_letter", "predicted_letter", "probs"}
    assert set(PREDICTION_COLUMNS) - set(PREDICTION_INPUT_COLUMNS) == derived
    assert all(column.meaning and column.type for column in PREDICTIONS_SCHEMA)


def test_a_missing_column_is_named_with_its_meaning():
    with pytest.raises(
        ValueError, match=r"answers DataFrame lacks column\(s\) 'scale_max' \(int: highest code"
    ):
        make_predictions(answers().drop(columns="scale_max"), [[1, 0, 0]] * 2)
    with pytest.raises(
        ValueError, match=r"lacks column\(s\) 'probs' \(list\[float\]: .*\), 'fallback'; it has"
    ):
        require_columns(answers(), ["probs", "fallback"])
