"""The predictions DataFrame every metric reads: its schema, checks and helpers.

Scoring (`cuma.evaluation.scoring`) and the non-LLM references (`cuma.reference_baselines`) both return
it through `make_predictions`, so every metric scores every method the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class SchemaColumn:
    """One column of the predictions DataFrame.

    Attributes:
        name: the column name.
        type: what each cell holds.
        meaning: what it says.
        given: part of the answer rows `make_predictions` starts from (else it derives the column).
    """

    name: str
    type: str
    meaning: str
    given: bool


PREDICTIONS_SCHEMA = (
    SchemaColumn("respondent_id", "str", "who answered", given=True),
    SchemaColumn("question_id", "str", "the question answered", given=True),
    SchemaColumn("target_code", "int", "the respondent's answer, as its option's code", given=True),
    SchemaColumn("predicted_code", "int", "the most probable option's code (the first on ties)", given=False),
    SchemaColumn("target_letter", "str", "the answer's option letter in the prompt", given=False),
    SchemaColumn("predicted_letter", "str", "the most probable option's letter", given=False),
    SchemaColumn("option_codes", "list[int]", "the question's option codes, in option order", given=True),
    SchemaColumn("option_letters", "list[str]", "the options' letters, in option order", given=True),
    SchemaColumn("probs", "list[float]", "each option's probability, in option order (sum 1)", given=False),
    SchemaColumn("scale_min", "int", "lowest code of the answer scale (EMD maps it to 0)", given=True),
    SchemaColumn("scale_max", "int", "highest code of the answer scale (EMD maps it to 1)", given=True),
    SchemaColumn("ordinal", "bool", "whether the codes are ordered (EMD is only defined then)", given=True),
)
"""One row per (respondent, question), these columns first, then one column per demographic profile field
(its value, or None when missing); a producer may add columns of its own (the references' ``fallback``)."""

PREDICTION_COLUMNS = tuple(column.name for column in PREDICTIONS_SCHEMA)
"""Every schema column's name, in schema order."""

PREDICTION_INPUT_COLUMNS = tuple(column.name for column in PREDICTIONS_SCHEMA if column.given)
"""The columns of the answer rows `make_predictions` turns into predictions (`examples_frame` has them)."""

_MEANINGS = {column.name: f"{column.type}: {column.meaning}" for column in PREDICTIONS_SCHEMA}


def require_columns(
    frame: pd.DataFrame, columns: Iterable[str] = PREDICTION_COLUMNS, what: str = "predictions"
) -> None:
    """Raise a clear error listing every required column the frame lacks (with its schema meaning)."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        named = ", ".join(f"{c!r} ({_MEANINGS[c]})" if c in _MEANINGS else repr(c) for c in missing)
        raise ValueError(f"{what} DataFrame lacks column(s) {named}; it has {list(frame.columns)}")


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
                f"row {row!r}: {code_column}={code} is not in option_codes={list(options)!r}"
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
        raise ValueError(f"question {question!r} has several {column} values: {list(values)}")
    return float(values[0])


def _probs(rows: pd.DataFrame, n_options: int) -> np.ndarray:
    return np.stack(
        [_checked_probs(row, value, n_options) for row, value in zip(rows.index, rows["probs"], strict=True)]
    )


def _checked_probs(row: object, value: Sequence[float], n_options: int) -> np.ndarray:
    vector = np.asarray(value, dtype=float)
    if vector.shape != (n_options,) or not np.all(np.isfinite(vector)) or np.any(vector < 0):
        raise ValueError(
            f"predictions row {row!r}: probs must be {n_options} finite numbers >= 0, "
            f"got {np.ravel(vector).tolist()!r}"
        )
    if abs(vector.sum() - 1) > 1e-4:
        raise ValueError(f"predictions row {row!r}: probs sum to {vector.sum():.6f}, not 1")
    return vector / vector.sum()


def make_predictions(answers: pd.DataFrame, probs: Sequence[Sequence[float]]) -> pd.DataFrame:
    """The predictions DataFrame (`PREDICTIONS_SCHEMA`) for answer rows and one probability vector over the
    options per row.

    ``answers`` has the `PREDICTION_INPUT_COLUMNS` plus profile fields; the argmax (first option on ties)
    becomes ``predicted_code`` and the letters are looked up from the options. The schema's columns come
    first, in schema order, then the rest of ``answers``' columns in their order.
    """
    require_columns(answers, PREDICTION_INPUT_COLUMNS, what="answers")
    if len(probs) != len(answers):
        raise ValueError(f"got {len(probs)} probability vectors for {len(answers)} answer rows")
    frame = answers.copy()
    frame["probs"] = [
        _checked_probs(row, p, len(options)).tolist()
        for row, p, options in zip(frame.index, probs, frame["option_codes"], strict=True)
    ]
    predicted = [int(np.argmax(p)) for p in frame["probs"]]
    frame["target_letter"] = _pick(frame["option_letters"], option_index(frame, "target_code"))
    frame["predicted_code"] = [int(c) for c in _pick(frame["option_codes"], predicted)]
    frame["predicted_letter"] = _pick(frame["option_letters"], predicted)
    return frame[[*PREDICTION_COLUMNS, *(c for c in frame.columns if c not in PREDICTION_COLUMNS)]]


def _pick(options: pd.Series, positions: Sequence[int]) -> list:
    return [list(values)[i] for values, i in zip(options, positions, strict=True)]
