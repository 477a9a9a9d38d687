"""`DataError` messages and `LoadSummary` bookkeeping."""

import numpy as np
import pytest

from cuma.data.errors import DataError, first_true
from cuma.data.summary import LoadSummary


def test_data_error_names_place_and_plain_value():
    err = DataError("bad code", source="t.csv", row=3, column="q1", value=np.int64(7))
    assert str(err) == "t.csv, row 3, column 'q1': bad code (value 7)"
    assert type(err.value) is int
    assert str(DataError("no value", value=np.array([1, 2]))).endswith("(value array([1, 2]))")


def test_first_true_is_the_position_of_the_first_true_entry():
    assert first_true(np.array([False, False, True, True])) == 2


def test_summary_counts_must_add_up():
    summary = LoadSummary("src")
    summary.add("turns", 5, 3, {"empty": 2, "never": 0}, notes={"cut short": 1})
    assert summary.units["turns"].dropped == {"empty": 2}
    assert "kept, but cut short: 1" in str(summary)
    with pytest.raises(RuntimeError, match="src: rows: read 5"):
        summary.add("rows", 5, 3, {"empty": 1})
    with pytest.raises(RuntimeError, match="notes"):
        summary.add("rows", 5, 3, {"empty": 2}, notes={"cut short": 4})
