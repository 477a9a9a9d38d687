"""Checks and helpers for the predictions DataFrame every metric reads (schema in notes/TEAM.md)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

PREDICTION_COLUMNS = (
    "respondent_id",
    "question_id",
    "target_code",
    "predicted_code",
    "target_letter",
    "predicted_letter",
    "option_codes",
    "option_letters",
    "probs",
    "scale_min",
    "scale_max",
    "ordinal",
)


def require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str = "predictions") -> None:
    """Raise a clear error listing every required column the frame lacks."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{what} DataFrame lacks column(s) {missing}; it has {list(frame.columns)}")


def group_values(frame: pd.DataFrame, field: str) -> pd.Series:
    """The field's values as strings, with missing values (None, NaN, pd.NA) kept as NaN.

    Values are compared as text so that 43 and "43" are one group, the way the profile renders them.
    """
    require_columns(frame, [field])
    values = frame[field]
    return values.where(values.isna(), values.astype(str)).astype(object)


def option_index(frame: pd.DataFrame, code_column: str) -> np.ndarray:
    """Position of each row's ``code_column`` value in its ``option_codes``; errors name the row."""
    positions = np.empty(len(frame), dtype=np.int64)
    for i, (row, code, options) in enumerate(
        zip(frame.index, frame[code_column], frame["option_codes"], strict=True)
    ):
        try:
            positions[i] = list(options).index(code)
        except ValueError:
            raise ValueError(
                f"predictions row {row!r}: {code_column}={code!r} is not in option_codes={list(options)!r}"
            ) from None
    return positions


@dataclass(frozen=True)
class QuestionBlock:
    """One question's rows as arrays aligned with its option list.

    Attributes:
        question_id: the question.
        rows: the question's slice of the predictions DataFrame (original index kept).
        option_codes: the options' numeric codes, in option order, shape [K].
        scale_min, scale_max: the answer scale, for mapping codes onto [0, 1].
        ordinal: whether the codes are ordered (EMD is only meaningful then).
        probs: predicted probability over the options per row, shape [n, K].
        target: index of the true option per row, shape [n].
        predicted: index of the argmax option per row, shape [n].
    """

    question_id: object
    rows: pd.DataFrame
    option_codes: np.ndarray
    scale_min: float
    scale_max: float
    ordinal: bool
    probs: np.ndarray
    target: np.ndarray
    predicted: np.ndarray


def iter_questions(predictions: pd.DataFrame, need_probs: bool = True) -> Iterator[QuestionBlock]:
    """Split the predictions per question, checking options, scale and probabilities row by row."""
    columns = ["question_id", "target_code", "predicted_code", "option_codes", "scale_min", "scale_max"]
    require_columns(predictions, [*columns, "ordinal", *(["probs"] if need_probs else [])])
    if predictions.empty:
        raise ValueError("predictions DataFrame is empty: no answers to score")
    for question, rows in predictions.groupby("question_id", sort=False):
        options = list(rows["option_codes"].iloc[0])
        for row, row_options in zip(rows.index, rows["option_codes"], strict=True):
            if list(row_options) != options:
                raise ValueError(
                    f"predictions row {row!r}: question {question!r} has option_codes={list(row_options)!r}, "
                    f"other rows have {options!r}"
                )
        yield QuestionBlock(
            question_id=question,
            rows=rows,
            option_codes=np.asarray(options, dtype=float),
            scale_min=_single(rows, "scale_min", question),
            scale_max=_single(rows, "scale_max", question),
            ordinal=bool(_single(rows, "ordinal", question)),
            probs=_probs(rows, len(options)) if need_probs else np.empty((len(rows), 0)),
            target=option_index(rows, "target_code"),
            predicted=option_index(rows, "predicted_code"),
        )


def _single(rows: pd.DataFrame, column: str, question: object) -> float:
    values = rows[column].unique()
    if len(values) != 1:
        raise ValueError(f"question {question!r} has several {column} values: {sorted(values)}")
    return float(values[0])


def _probs(rows: pd.DataFrame, n_options: int) -> np.ndarray:
    probs = np.zeros((len(rows), n_options))
    for i, (row, value) in enumerate(zip(rows.index, rows["probs"], strict=True)):
        vector = np.asarray(value, dtype=float)
        if vector.shape != (n_options,) or not np.all(np.isfinite(vector)) or np.any(vector < 0):
            raise ValueError(
                f"predictions row {row!r}: probs must be {n_options} finite numbers >= 0, "
                f"got {np.ravel(vector).tolist()!r}"
            )
        if abs(vector.sum() - 1) > 1e-4:
            raise ValueError(f"predictions row {row!r}: probs sum to {vector.sum():.6f}, not 1")
        probs[i] = vector / vector.sum()
    return probs
