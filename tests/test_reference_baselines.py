"""Each reference baseline on a fixture whose right answer is known."""

import itertools

import numpy as np
import pandas as pd
import pytest

from cuma.methods import METHODS
from cuma.metrics import PREDICTION_COLUMNS, accuracy
from cuma.reference_baselines import (
    REFERENCE_BASELINES,
    BaselineConfig,
    cell_majority,
    logistic_regression,
    population_majority,
)

FIELDS = ["country", "sex"]


def _answers(question: str, targets: list[int], n_options: int = 3, **fields: list) -> pd.DataFrame:
    codes = list(range(1, n_options + 1))
    return pd.DataFrame(
        {
            "respondent_id": range(len(targets)),
            "question_id": question,
            "target_code": targets,
            "option_codes": [codes] * len(targets),
            "option_letters": [[chr(ord("A") + i) for i in range(n_options)]] * len(targets),
            "scale_min": 1,
            "scale_max": n_options,
            "ordinal": True,
            **fields,
        }
    )


def _mapped(question: str, answer_of: dict, repeats: int) -> pd.DataFrame:
    """Every (country, sex) cell ``repeats`` times, answering ``answer_of[(country, sex)]``."""
    cells = list(answer_of) * repeats
    return _answers(
        question,
        [answer_of[cell] for cell in cells],
        n_options=4,
        country=[c for c, _ in cells],
        sex=[s for _, s in cells],
    )


def test_population_majority_picks_the_mode():
    train = _answers("q", [1, 1, 2, 2, 2, 2, 2, 3], country=["x"] * 8, sex=["f"] * 8)
    test = _answers("q", [1, 3], country=["x", "y"], sex=["f", "m"])
    predictions = population_majority(train, test)
    assert list(predictions["predicted_code"]) == [2, 2]
    assert predictions.loc[0, "probs"] == pytest.approx([3 / 11, 6 / 11, 2 / 11])
    empirical = population_majority(train, test, config=BaselineConfig(smoothing=0))
    assert empirical.loc[0, "probs"] == pytest.approx([2 / 8, 5 / 8, 1 / 8])
    assert set(PREDICTION_COLUMNS) <= set(predictions.columns)
    assert not predictions["fallback"].any()


def test_cell_majority_recovers_a_deterministic_cell_mapping():
    cells = itertools.product(["a", "b", "c"], ["f", "m", None])
    answer_of = {cell: 1 + i % 4 for i, cell in enumerate(cells)}
    predictions = cell_majority(_mapped("q", answer_of, 3), _mapped("q", answer_of, 1), FIELDS)
    assert accuracy(predictions) == 1
    assert not predictions["fallback"].any()


def test_cell_majority_falls_back_to_the_population_for_unseen_cells():
    train = _answers("q", [1, 3, 3, 3], country=["a", "b", "b", "b"], sex=["f"] * 4)
    test = _answers("q", [1, 1], country=["a", "z"], sex=["f", "f"])
    predictions = cell_majority(train, test, FIELDS)
    assert list(predictions["predicted_code"]) == [1, 3]
    assert list(predictions["fallback"]) == [False, True]


def test_logistic_regression_recovers_a_separable_field_mapping():
    # The answer depends on country only (a missing country is its own category); sex is noise.
    by_country = {"a": 1, "b": 2, "c": 3, None: 4}
    answer_of = {(c, s): by_country[c] for c in by_country for s in ["f", "m"]}
    train = pd.concat([_mapped("q1", answer_of, 4), _mapped("q2", answer_of, 4)], ignore_index=True)
    test = pd.concat([_mapped("q1", answer_of, 1), _mapped("q2", answer_of, 1)], ignore_index=True)
    predictions = logistic_regression(train, test, FIELDS)
    assert accuracy(predictions) == 1
    assert all(np.isclose(sum(p), 1) for p in predictions["probs"])
    assert not predictions["fallback"].any()


def test_logistic_regression_falls_back_when_train_has_one_answer():
    train = _answers("q", [2, 2, 2], country=["a", "b", "c"], sex=["f"] * 3)
    predictions = logistic_regression(train, train, FIELDS)
    assert list(predictions["predicted_code"]) == [2, 2, 2]
    assert predictions["fallback"].all()


def test_registry_holds_every_reference_method_by_its_config_name():
    references = {name for name, spec in METHODS.items() if spec.kind == "reference"}
    assert set(REFERENCE_BASELINES) == references
    assert REFERENCE_BASELINES["majority"] is population_majority
    assert REFERENCE_BASELINES["logistic"] is logistic_regression


@pytest.mark.parametrize("name", sorted(REFERENCE_BASELINES))
def test_question_without_train_answers_is_named(name):
    train = _answers("q1", [1, 2], country=["a", "b"], sex=["f", "m"])
    test = _answers("q2", [1, 2], country=["a", "b"], sex=["f", "m"])
    with pytest.raises(ValueError, match="'q2'"):
        REFERENCE_BASELINES[name](train, test, FIELDS, pool=train)


@pytest.mark.parametrize("name", sorted(REFERENCE_BASELINES))
def test_every_reference_takes_validation_and_pool_answers(name):
    # The comparison calls every reference alike; those that do not learn from them ignore them.
    train = _mapped("q", {("a", "f"): 1, ("b", "m"): 2}, 3)
    test = _mapped("q", {("a", "f"): 1, ("b", "m"): 2}, 1)
    predictions = REFERENCE_BASELINES[name](train, test, FIELDS, BaselineConfig(), valid=test, pool=train)
    assert list(predictions["question_id"]) == list(test["question_id"])


def test_missing_field_column_is_named():
    train = _answers("q", [1, 2], country=["a", "b"])
    with pytest.raises(ValueError, match="sex"):
        cell_majority(train, train, FIELDS)


def test_mismatched_options_are_named():
    train = _answers("q", [1, 2], country=["a", "b"], sex=["f", "m"])
    test = _answers("q", [1, 2], n_options=4, country=["a", "b"], sex=["f", "m"])
    with pytest.raises(ValueError, match="option_codes"):
        population_majority(train, test)
