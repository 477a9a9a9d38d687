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
  (missing is a category of its own; values unseen in training are ignored), fitted on the LLMs' training
  sample. A question whose train rows all give one answer cannot be fitted and falls back to the
  population (``fallback`` True). An option no train row of the question chose gets the smoothed
  population share (``smoothing`` as below), not 0.
- ``logistic-pool`` (`logistic_pool`): the same model fitted on the full training pool, every answer of
  every training-split respondent (``pool=``), not only the sampled ones: what the profile alone predicts
  given all the data the survey holds for training.

The logistic regressions' L2 strength is chosen from ``BaselineConfig.C_grid``: one C for every question,
the one with the lowest log-loss summed over the validation answers (``valid=``: validation respondents'
answers to any of the training questions), or, without them, over out-of-fold predictions of a
``BaselineConfig.cv_folds``-fold cross-validation of each question's training rows; the smallest C wins
ties. One C, not one per question: on GSS 2018 per-question choices (from about 200 validation answers
each) overfit the validation set and scored worse on test than the one shared C. Their predictions carry
the choice in columns of their own: ``C`` (NaN where the question fell back), ``C_chosen_by``
("validation", "cross-validation", "fixed" for a one-value grid, or "none" when every question fell back)
and ``fit_rows`` (the question's training rows); `fitted_settings` reads them back for a run's record.

Every baseline takes the keyword arguments ``valid`` and ``pool``; only the logistic ones use them.

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

import itertools
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from sklearn.preprocessing import OneHotEncoder
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from cuma.metrics.frame import (
    PREDICTION_INPUT_COLUMNS,
    group_values,
    make_predictions,
    option_index,
    require_columns,
)
from cuma.metrics.proper import EPS

MISSING = "<missing>"
"""Category that stands for a missing profile value in cells and one-hot features."""

C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2)
"""Default candidates for the logistic regressions' C, one per decade."""


@dataclass(frozen=True)
class BaselineConfig:
    """Settings of the reference baselines.

    Attributes:
        smoothing: pseudo-count per option in the majority baselines' probabilities (>= 0).
        C_grid: candidate inverse L2 strengths of the logistic regressions, strictly increasing and > 0;
            the one chosen is described in the module docstring (one value: that C, nothing chosen).
        cv_folds: folds of the cross-validation that chooses C when no validation answers are given
            (>= 2; a question with fewer training rows has one fold per row).
        max_iter: iteration cap of the logistic regression's lbfgs solver.
        seed: ``random_state`` of the logistic regression and of the cross-validation's folds.
    """

    smoothing: float = 1.0
    C_grid: tuple[float, ...] = C_GRID
    cv_folds: int = 5
    max_iter: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.smoothing < 0:
            raise ValueError(f"BaselineConfig.smoothing must be >= 0, got {self.smoothing}")
        grid = list(self.C_grid)
        if not grid:
            raise ValueError("BaselineConfig.C_grid is empty: give at least one C (> 0)")
        if any(c <= 0 for c in grid) or any(b <= a for a, b in itertools.pairwise(grid)):
            raise ValueError(f"BaselineConfig.C_grid must be > 0 and strictly increasing, got {grid}")
        if self.cv_folds < 2:
            raise ValueError(f"BaselineConfig.cv_folds must be >= 2, got {self.cv_folds}")


def population_majority(
    train: pd.DataFrame,
    test: pd.DataFrame,
    fields: Sequence[str] = (),
    config: BaselineConfig = BaselineConfig(),
    *,
    valid: pd.DataFrame | None = None,
    pool: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Predict every test respondent the question's most common train answer (``fields`` unused)."""
    return _per_question(train, test, fields, config, _population_question)


def cell_majority(
    train: pd.DataFrame,
    test: pd.DataFrame,
    fields: Sequence[str],
    config: BaselineConfig = BaselineConfig(),
    *,
    valid: pd.DataFrame | None = None,
    pool: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Predict the most common train answer of the respondent's cell (same value on every field)."""
    return _per_question(train, test, fields, config, _cell_question, need_fields=True)


def logistic_regression(
    train: pd.DataFrame,
    test: pd.DataFrame,
    fields: Sequence[str],
    config: BaselineConfig = BaselineConfig(),
    *,
    valid: pd.DataFrame | None = None,
    pool: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Predict with a multinomial logistic regression per question on one-hot profile fields, fitted on
    ``train`` with C chosen on ``valid`` (or by cross-validation on ``train``); ``pool`` unused."""
    return _logistic(train, test, fields, config, valid, "logistic regression")


def logistic_pool(
    train: pd.DataFrame,
    test: pd.DataFrame,
    fields: Sequence[str],
    config: BaselineConfig = BaselineConfig(),
    *,
    valid: pd.DataFrame | None = None,
    pool: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """`logistic_regression` fitted on ``pool``, every training-split answer (``train`` unused)."""
    if pool is None:
        raise ValueError(
            "logistic-pool is fitted on the full training pool: pass pool= (every answer of every "
            "training-split respondent), not only the sampled train answers"
        )
    return _logistic(pool, test, fields, config, valid, "logistic regression (pool)", fit_name="pool")


def random_draw(
    train: pd.DataFrame,
    test: pd.DataFrame,
    fields: Sequence[str] = (),
    config: BaselineConfig = BaselineConfig(),
    *,
    valid: pd.DataFrame | None = None,
    pool: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Answer each test row with a draw from the question's training answers (``fields`` unused)."""
    return _per_question(train, test, fields, config, _random_draw_question)


def shuffled_truth(
    train: pd.DataFrame,
    test: pd.DataFrame,
    fields: Sequence[str] = (),
    config: BaselineConfig = BaselineConfig(),
    *,
    valid: pd.DataFrame | None = None,
    pool: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Answer each test row with another respondent's true answer to the question (``fields`` unused)."""
    return _per_question(train, test, fields, config, _shuffled_question)


def always_first(
    train: pd.DataFrame,
    test: pd.DataFrame,
    fields: Sequence[str] = (),
    config: BaselineConfig = BaselineConfig(),
    *,
    valid: pd.DataFrame | None = None,
    pool: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Answer every test row with the question's first option (``train`` and ``fields`` unused)."""
    return _per_question(train, test, fields, config, _first_question)


def fitted_settings(predictions: pd.DataFrame) -> dict[str, object]:
    """What a logistic reference chose, for its run's record: ``C``, ``C_chosen_by`` and ``fit_answers``
    (training rows over the predicted questions); empty for the other baselines."""
    if "C" not in predictions.columns:
        return {}
    chosen = predictions["C"].dropna().unique()
    per_question = predictions.drop_duplicates("question_id")["fit_rows"]
    return {
        "C": float(chosen[0]) if len(chosen) else None,
        "C_chosen_by": str(predictions["C_chosen_by"].iloc[0]),
        "fit_answers": int(per_question.sum()),
    }


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
    "logistic-pool": logistic_pool,
    **CALIBRATION_BASELINES,
}
"""Method name (as in configs) -> baseline ``(train, test, fields, config, *, valid=None, pool=None) ->
predictions DataFrame``."""


def _prepare(
    train: pd.DataFrame,
    test: pd.DataFrame,
    fields: Sequence[str],
    need_fields: bool = False,
    fit_name: str = "train",
) -> tuple[pd.DataFrame, dict[object, tuple[pd.DataFrame, pd.DataFrame]]]:
    """Check both splits and pair each test question's rows with its ``fit_name`` rows (``train``).

    The test frame comes back with a fresh 0..n-1 index, which the per-question rows keep.
    """
    if need_fields and not fields:
        raise ValueError("this baseline needs at least one profile field")
    require_columns(train, [*PREDICTION_INPUT_COLUMNS, *fields], what=f"{fit_name} answers")
    require_columns(test, [*PREDICTION_INPUT_COLUMNS, *fields], what="test answers")
    if test.empty:
        raise ValueError("test answers DataFrame is empty: nothing to predict")
    test = test.reset_index(drop=True)
    train_groups = dict(tuple(train.groupby("question_id", sort=False)))
    by_question = {}
    for question, rows in test.groupby("question_id", sort=False):
        if question not in train_groups:
            raise ValueError(f"question {question!r} has test answers but no {fit_name} answers")
        fit = train_groups[question]
        options = list(rows["option_codes"].iloc[0])
        _check_options(question, options, f"test row {rows.index[0]}", ((fit_name, fit), ("test", rows)))
        by_question[question] = (rows, fit)
    return test, by_question


def _check_options(
    question: object, options: list, where: str, frames: Sequence[tuple[str, pd.DataFrame]]
) -> None:
    """Every row of ``frames`` (name, rows of ``question``) lists ``options``, those of ``where``."""
    for what, frame in frames:
        for row, row_options in zip(frame.index, frame["option_codes"], strict=True):
            if list(row_options) != options:
                raise ValueError(
                    f"{what} answers row {row!r}: question {question!r} has option_codes="
                    f"{list(row_options)!r}, {where} has {options!r}"
                )


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


@threadpool_limits.wrap(limits=1)
def _logistic(
    fit: pd.DataFrame,
    test: pd.DataFrame,
    fields: Sequence[str],
    config: BaselineConfig,
    valid: pd.DataFrame | None,
    progress: str,
    fit_name: str = "train",
) -> pd.DataFrame:
    """The logistic references: choose one C (`_choose_C`), then fit each test question on ``fit``.

    The fits are small (one question's rows, a few dozen one-hot columns): BLAS threads only add overhead
    there (ten times the time and more, measured on a busy 2-core machine), so they run on one.
    """
    test, by_question = _prepare(fit, test, fields, need_fields=True, fit_name=fit_name)
    fit_groups = dict(tuple(fit.groupby("question_id", sort=False)))
    held = None if valid is None else _validation_groups(valid, fit_groups, fields, fit_name)
    fitted = [len(np.unique(option_index(answers, "target_code"))) > 1 for _, answers in by_question.values()]
    # With every question falling back to the population there is no C to choose.
    C, chosen_by = _choose_C(fit_groups, held, fields, config, progress) if any(fitted) else (np.nan, "none")
    probs = [np.empty(0)] * len(test)
    fallback = np.zeros(len(test), dtype=bool)
    fit_rows = np.zeros(len(test), dtype=np.int64)
    questions = zip(by_question.values(), fitted, strict=True)
    for (rows, answers), can_fit in tqdm(questions, desc=progress, unit="question", total=len(fitted)):
        if not can_fit:
            vectors = _population_question(rows, answers, fields, config)[0]
            fallback[rows.index] = True
        else:
            encoder = OneHotEncoder(handle_unknown="ignore")
            target = option_index(answers, "target_code")
            model = _fit(encoder.fit_transform(_categories(answers, fields)), target, C, config)
            n_options = len(rows["option_codes"].iloc[0])
            features = encoder.transform(_categories(rows, fields))
            vectors = list(_proba(model, features, n_options, len(target), config.smoothing))
        for position, vector in zip(rows.index, vectors, strict=True):
            probs[position] = vector
        fit_rows[rows.index] = len(answers)
    predictions = _finish(test, probs, fallback)
    predictions["C"] = np.where(fallback, np.nan, C)
    predictions["C_chosen_by"] = chosen_by
    predictions["fit_rows"] = fit_rows
    return predictions


def _validation_groups(
    valid: pd.DataFrame, fit_groups: dict[object, pd.DataFrame], fields: Sequence[str], fit_name: str
) -> dict[object, pd.DataFrame]:
    """The validation answers by question, each question checked against its ``fit_name`` rows."""
    require_columns(valid, [*PREDICTION_INPUT_COLUMNS, *fields], what="validation answers")
    if valid.empty:
        raise ValueError("validation answers DataFrame is empty: nothing to choose C on (pass valid=None)")
    groups = dict(tuple(valid.groupby("question_id", sort=False)))
    for question, rows in groups.items():
        if question not in fit_groups:
            raise ValueError(f"question {question!r} has validation answers but no {fit_name} answers")
        fit = fit_groups[question]
        options = list(fit["option_codes"].iloc[0])
        _check_options(question, options, f"{fit_name} row {fit.index[0]!r}", (("validation", rows),))
    return groups


def _choose_C(
    fit_groups: dict[object, pd.DataFrame],
    held: dict[object, pd.DataFrame] | None,
    fields: Sequence[str],
    config: BaselineConfig,
    progress: str,
) -> tuple[float, str]:
    """The grid's C with the lowest log-loss summed over every held-out answer, and how it was held out.

    Held out are the validation answers (``held``) fitted on all of their question's rows, or else each
    question's cross-validation folds; a fit whose rows give one answer says nothing about C and is left
    out, as for every C alike.
    """
    grid = config.C_grid
    if len(grid) == 1:
        return grid[0], "fixed"
    loss = np.zeros(len(grid))
    scored = 0
    questions = held if held is not None else fit_groups
    for question in tqdm(questions, desc=f"{progress}: choosing C", unit="question"):
        fit = fit_groups[question]
        n_options = len(fit["option_codes"].iloc[0])
        for fit_x, fit_y, held_x, held_y in _held_out(
            fit, None if held is None else held[question], fields, config
        ):
            for i, C in enumerate(grid):
                model = _fit(fit_x, fit_y, C, config)
                p = _proba(model, held_x, n_options, len(fit_y), config.smoothing)[
                    np.arange(len(held_y)), held_y
                ]
                loss[i] -= np.log(np.clip(p, EPS, 1.0)).sum()
            scored += len(held_y)
    if scored == 0:
        raise ValueError(
            "no held-out answer to choose C on: the training rows of every question (or of every "
            "cross-validation fold) give a single answer; give more answers or a one-value C_grid"
        )
    return grid[int(np.argmin(loss))], "validation" if held is not None else "cross-validation"


def _held_out(
    fit: pd.DataFrame, held: pd.DataFrame | None, fields: Sequence[str], config: BaselineConfig
) -> list[tuple]:
    """One question's (fit features, fit answers, held-out features, held-out answers): ``held`` against
    all of ``fit``, or ``fit``'s cross-validation folds; those whose fit rows give one answer are left out."""
    target = option_index(fit, "target_code")
    encoder = OneHotEncoder(handle_unknown="ignore")
    features = encoder.fit_transform(_categories(fit, fields))
    if held is not None:
        splits = [
            (
                features,
                target,
                encoder.transform(_categories(held, fields)),
                option_index(held, "target_code"),
            )
        ]
    else:
        folds = KFold(min(config.cv_folds, len(fit)), shuffle=True, random_state=config.seed)
        splits = [
            (features[inner], target[inner], features[outer], target[outer])
            for inner, outer in folds.split(features)
        ]
    return [split for split in splits if len(np.unique(split[1])) > 1]


def _fit(features, target: np.ndarray, C: float, config: BaselineConfig) -> LogisticRegression:
    model = LogisticRegression(C=C, max_iter=config.max_iter, random_state=config.seed)
    return model.fit(features, target)


def _proba(
    model: LogisticRegression, features, n_options: int, fit_rows: int, smoothing: float
) -> np.ndarray:
    """Probabilities over every option, in option order.

    The model knows only the options some fit row chose. Each option none chose gets the share the
    smoothed population reference gives it, ``smoothing / (fit_rows + smoothing * n_options)``, and the
    fitted probabilities share the rest: a probability of 0 would cost the clipped log-loss (about 36)
    whenever a respondent picks such an option, and on a few dozen answers per question that happens
    (a log-loss of 3.6 on GSS 2018 with 9 answers per question, more than three times the uniform 1.1).
    """
    full = np.zeros((features.shape[0], n_options))
    absent = np.setdiff1d(np.arange(n_options), model.classes_)
    share = smoothing / (fit_rows + smoothing * n_options) if len(absent) else 0.0
    full[:, model.classes_] = model.predict_proba(features) * (1.0 - share * len(absent))
    full[:, absent] = share
    return full


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
