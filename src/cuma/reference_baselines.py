"""Non-LLM reference points: what a survey statistician would predict from the profile alone.

Each baseline is fitted on the train answers of a question and predicts its test answers, returning the
predictions DataFrame (`cuma.metrics.frame.PREDICTIONS_SCHEMA`, plus a ``fallback`` column) so the same
metrics score them.
`REFERENCE_BASELINES` maps their method names (those of ``cuma.methods.METHODS``) to the functions:

- ``majority``: the question's most common train answer, for everyone.
- ``cell-majority``: the most common train answer among respondents with exactly the same profile
  (missing is a value of its own); a cell with no train answers to the question falls back to the
  population, and ``fallback`` is True on those rows.
- ``logistic``: multinomial logistic regression per question on one-hot profile fields
  (missing is a category of its own; values unseen in training are ignored). A question whose train
  rows all give one answer cannot be fitted and falls back to the population (``fallback`` True).

The majority baselines' ``probs`` are the answer counts plus ``smoothing`` per option, normalised (1.0 is
Laplace smoothing, 0 the empirical distribution); their argmax is the mode, the first option on ties.
The cell majority's ``probs`` are therefore the cell's (smoothed) training answer distribution, the
"cell distribution" reference of the report's gains.

`CALIBRATION_BASELINES` are controls, not predictors: they know nothing about the person, and a metric on
which they score well rewards matching the question's marginal distribution rather than predicting the
respondent. Each puts probability 1 on its one answer (a one-hot ``probs``, so ``predicted_code`` is that
answer, as the schema defines it), so their log-loss is that of a point forecast: ``-log`` of the clipping
epsilon (`cuma.metrics.proper.EPS`) per miss.

- ``random-draw``: an answer drawn at random from the question's (unsmoothed) training distribution.
- ``shuffled-truth``: the true test answers of the question, permuted at random among its respondents
  (it reads the test answers on purpose: its answer distribution is exactly the humans').
- ``always-first``: the question's first option, for everyone.

Their draws are seeded by ``BaselineConfig.seed`` and the question id, so they do not depend on the
order of the questions.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder
from tqdm.auto import tqdm

from cuma.metrics.frame import (
    PREDICTION_INPUT_COLUMNS,
    group_values,
    make_predictions,
    option_index,
    require_columns,
)

MISSING = "<missing>"
"""Category that stands for a missing profile value in cells and one-hot features."""


@dataclass(frozen=True)
class BaselineConfig:
    """Settings of the reference baselines.

    Attributes:
        smoothing: pseudo-count per option in the majority baselines' probabilities (>= 0).
        C: inverse L2 regularisation strength of the logistic regression.
        max_iter: iteration cap of the logistic regression's lbfgs solver.
        seed: ``random_state`` of the logistic regression, for reproducible fits.
    """

    smoothing: float = 1.0
    C: float = 1.0
    max_iter: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.smoothing < 0:
            raise ValueError(f"BaselineConfig.smoothing must be >= 0, got {self.smoothing}")
        if self.C <= 0:
            raise ValueError(f"BaselineConfig.C must be > 0, got {self.C}")


def population_majority(
    train: pd.DataFrame,
    test: pd.DataFrame,
    fields: Sequence[str] = (),
    config: BaselineConfig = BaselineConfig(),
) -> pd.DataFrame:
    """Predict every test respondent the question's most common train answer (``fields`` unused)."""
    return _per_question(train, test, fields, config, _population_question)


def cell_majority(
    train: pd.DataFrame, test: pd.DataFrame, fields: Sequence[str], config: BaselineConfig = BaselineConfig()
) -> pd.DataFrame:
    """Predict the most common train answer of the respondent's cell (same value on every field)."""
    return _per_question(train, test, fields, config, _cell_question, need_fields=True)


def logistic_regression(
    train: pd.DataFrame, test: pd.DataFrame, fields: Sequence[str], config: BaselineConfig = BaselineConfig()
) -> pd.DataFrame:
    """Predict with a multinomial logistic regression per question on one-hot profile fields."""
    return _per_question(
        train, test, fields, config, _logistic_question, need_fields=True, progress="logistic regression"
    )


def random_draw(
    train: pd.DataFrame,
    test: pd.DataFrame,
    fields: Sequence[str] = (),
    config: BaselineConfig = BaselineConfig(),
) -> pd.DataFrame:
    """Answer each test row with a draw from the question's training answers (``fields`` unused)."""
    return _per_question(train, test, fields, config, _random_draw_question)


def shuffled_truth(
    train: pd.DataFrame,
    test: pd.DataFrame,
    fields: Sequence[str] = (),
    config: BaselineConfig = BaselineConfig(),
) -> pd.DataFrame:
    """Answer each test row with another respondent's true answer to the question (``fields`` unused)."""
    return _per_question(train, test, fields, config, _shuffled_question)


def always_first(
    train: pd.DataFrame,
    test: pd.DataFrame,
    fields: Sequence[str] = (),
    config: BaselineConfig = BaselineConfig(),
) -> pd.DataFrame:
    """Answer every test row with the question's first option (``train`` and ``fields`` unused)."""
    return _per_question(train, test, fields, config, _first_question)


CALIBRATION_BASELINES: dict[str, Callable[..., pd.DataFrame]] = {
    "random-draw": random_draw,
    "shuffled-truth": shuffled_truth,
    "always-first": always_first,
}
"""Calibration rows by method name, with the signature of `REFERENCE_BASELINES` (see the module docstring)."""

REFERENCE_BASELINES: dict[str, Callable[..., pd.DataFrame]] = {
    "majority": population_majority,
    "cell-majority": cell_majority,
    "logistic": logistic_regression,
    **CALIBRATION_BASELINES,
}
"""Method name (as in configs) -> baseline ``(train, test, fields, config) -> predictions DataFrame``."""


def _prepare(
    train: pd.DataFrame, test: pd.DataFrame, fields: Sequence[str], need_fields: bool = False
) -> tuple[pd.DataFrame, dict[object, tuple[pd.DataFrame, pd.DataFrame]]]:
    """Check both splits and pair each test question's rows with its train rows.

    The test frame comes back with a fresh 0..n-1 index, which the per-question rows keep.
    """
    if need_fields and not fields:
        raise ValueError("this baseline needs at least one profile field")
    require_columns(train, [*PREDICTION_INPUT_COLUMNS, *fields], what="train answers")
    require_columns(test, [*PREDICTION_INPUT_COLUMNS, *fields], what="test answers")
    if test.empty:
        raise ValueError("test answers DataFrame is empty: nothing to predict")
    test = test.reset_index(drop=True)
    train_groups = dict(tuple(train.groupby("question_id", sort=False)))
    by_question = {}
    for question, rows in test.groupby("question_id", sort=False):
        if question not in train_groups:
            raise ValueError(f"question {question!r} has test answers but no train answers")
        fit = train_groups[question]
        options = list(rows["option_codes"].iloc[0])
        for what, frame in (("train", fit), ("test", rows)):
            for row, row_options in zip(frame.index, frame["option_codes"], strict=True):
                if list(row_options) != options:
                    raise ValueError(
                        f"{what} answers row {row!r}: question {question!r} has option_codes="
                        f"{list(row_options)!r}, test row {rows.index[0]} has {options!r}"
                    )
        by_question[question] = (rows, fit)
    return test, by_question


QuestionFit = Callable[
    [pd.DataFrame, pd.DataFrame, Sequence[str], BaselineConfig], tuple[list[np.ndarray], bool | np.ndarray]
]
"""One question's baseline: (test rows, train rows, fields, config) -> each test row's probabilities, and
whether each fell back to the population (one bool for all rows, or one per row)."""


def _per_question(
    train: pd.DataFrame,
    test: pd.DataFrame,
    fields: Sequence[str],
    config: BaselineConfig,
    fit_question: QuestionFit,
    need_fields: bool = False,
    progress: str | None = None,
) -> pd.DataFrame:
    """Fit ``fit_question`` on each question's train rows and predict its test rows (a progress bar named
    ``progress``, or none)."""
    test, by_question = _prepare(train, test, fields, need_fields=need_fields)
    probs = [np.empty(0)] * len(test)
    fallback = np.zeros(len(test), dtype=bool)
    for rows, fit in tqdm(by_question.values(), desc=progress, unit="question", disable=progress is None):
        vectors, fell_back = fit_question(rows, fit, fields, config)
        for position, vector in zip(rows.index, vectors, strict=True):
            probs[position] = vector
        fallback[rows.index] = fell_back
    return _finish(test, probs, fallback)


def _population_question(
    rows: pd.DataFrame, fit: pd.DataFrame, fields: Sequence[str], config: BaselineConfig
) -> tuple[list[np.ndarray], bool]:
    return [_smoothed(_counts(fit), config.smoothing)] * len(rows), False


def _cell_question(
    rows: pd.DataFrame, fit: pd.DataFrame, fields: Sequence[str], config: BaselineConfig
) -> tuple[list[np.ndarray], np.ndarray]:
    n_options = len(rows["option_codes"].iloc[0])
    counts: dict[tuple, np.ndarray] = {}
    for cell, answer in zip(_cells(fit, fields), option_index(fit, "target_code"), strict=True):
        counts.setdefault(cell, np.zeros(n_options, dtype=np.int64))[answer] += 1
    population = _smoothed(_counts(fit), config.smoothing)
    cells = _cells(rows, fields)
    vectors = [_smoothed(counts[cell], config.smoothing) if cell in counts else population for cell in cells]
    return vectors, np.array([cell not in counts for cell in cells], dtype=bool)


def _logistic_question(
    rows: pd.DataFrame, fit: pd.DataFrame, fields: Sequence[str], config: BaselineConfig
) -> tuple[list[np.ndarray], bool]:
    target = option_index(fit, "target_code")
    if len(np.unique(target)) == 1:
        return _population_question(rows, fit, fields, config)[0], True
    encoder = OneHotEncoder(handle_unknown="ignore")
    model = LogisticRegression(C=config.C, max_iter=config.max_iter, random_state=config.seed)
    model.fit(encoder.fit_transform(_categories(fit, fields)), target)
    full = np.zeros((len(rows), len(rows["option_codes"].iloc[0])))
    full[:, model.classes_] = model.predict_proba(encoder.transform(_categories(rows, fields)))
    return list(full), False


def _random_draw_question(
    rows: pd.DataFrame, fit: pd.DataFrame, fields: Sequence[str], config: BaselineConfig
) -> tuple[list[np.ndarray], bool]:
    counts = _counts(fit)
    draws = _rng(rows, config).choice(len(counts), size=len(rows), p=counts / counts.sum())
    return list(np.eye(len(counts))[draws]), False


def _shuffled_question(
    rows: pd.DataFrame, fit: pd.DataFrame, fields: Sequence[str], config: BaselineConfig
) -> tuple[list[np.ndarray], bool]:
    answers = _rng(rows, config).permutation(option_index(rows, "target_code"))
    return list(np.eye(len(rows["option_codes"].iloc[0]))[answers]), False


def _first_question(
    rows: pd.DataFrame, fit: pd.DataFrame, fields: Sequence[str], config: BaselineConfig
) -> tuple[list[np.ndarray], bool]:
    first = np.eye(len(rows["option_codes"].iloc[0]))[0]
    return [first] * len(rows), False


def _rng(rows: pd.DataFrame, config: BaselineConfig) -> np.random.Generator:
    """A generator of its own per question: the seed and a stable hash of the question id."""
    question = str(rows["question_id"].iloc[0]).encode("utf-8")
    return np.random.default_rng([config.seed, zlib.crc32(question)])


def _counts(fit: pd.DataFrame) -> np.ndarray:
    return np.bincount(option_index(fit, "target_code"), minlength=len(fit["option_codes"].iloc[0]))


def _smoothed(counts: np.ndarray, smoothing: float) -> np.ndarray:
    weights = counts + smoothing
    return weights / weights.sum()


def _categories(frame: pd.DataFrame, fields: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({field: group_values(frame, field).fillna(MISSING) for field in fields})


def _cells(frame: pd.DataFrame, fields: Sequence[str]) -> list[tuple]:
    return list(_categories(frame, fields).itertuples(index=False, name=None))


def _finish(test: pd.DataFrame, probs: list[np.ndarray], fallback: np.ndarray) -> pd.DataFrame:
    predictions = make_predictions(test, probs)
    predictions["fallback"] = fallback
    return predictions
