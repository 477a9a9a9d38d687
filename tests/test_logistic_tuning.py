"""The logistic references choose their L2 strength on held-out answers and say what they chose."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder

from cuma.reference_baselines import (
    BaselineConfig,
    fitted_settings,
    logistic_pool,
    logistic_regression,
    population_majority,
)

FIELDS = ["country", "sex"]
GRID = (1e-3, 1e-1, 1e1)
COUNTRIES = ["a", "b", "c"]


def _answers(question: str, countries: list, sexes: list, targets: list, codes=(1, 2, 3)) -> pd.DataFrame:
    n = len(targets)
    return pd.DataFrame(
        {
            "respondent_id": [f"{question}-{i}" for i in range(n)],
            "question_id": question,
            "target_code": targets,
            "option_codes": [list(codes)] * n,
            "option_letters": [["A", "B", "C"]] * n,
            "scale_min": min(codes),
            "scale_max": max(codes),
            "ordinal": True,
            "country": countries,
            "sex": sexes,
        }
    )


def _by_country(question: str, answer_of: dict, repeats: int, codes=(1, 2, 3)) -> pd.DataFrame:
    """Every (country, sex) pair ``repeats`` times, answering ``answer_of[country]``."""
    cells = [(c, s) for c in COUNTRIES for s in ["f", "m"]] * repeats
    targets = [answer_of[c] for c, _ in cells]
    return _answers(question, [c for c, _ in cells], [s for _, s in cells], targets, codes)


def _noise(question: str, n: int, seed: int) -> pd.DataFrame:
    """Answers drawn independently of the profile."""
    rng = np.random.default_rng(seed)
    countries = list(rng.choice(COUNTRIES, size=n))
    sexes = list(rng.choice(["f", "m"], size=n))
    return _answers(question, countries, sexes, list(rng.integers(1, 4, size=n)))


SIGNAL = {"a": 1, "b": 2, "c": 3}


def test_validation_answers_choose_c_from_the_grid():
    train = _by_country("q", SIGNAL, 5)
    config = BaselineConfig(C_grid=GRID)
    agreeing = logistic_regression(train, train, FIELDS, config, valid=_by_country("q", SIGNAL, 2))
    contradicting = {"a": 2, "b": 3, "c": 1}
    disagreeing = logistic_regression(train, train, FIELDS, config, valid=_by_country("q", contradicting, 2))
    assert fitted_settings(agreeing) == {"C": max(GRID), "C_chosen_by": "validation", "fit_answers": 30}
    assert fitted_settings(disagreeing)["C"] == min(GRID)
    assert set(agreeing["C"]) == {max(GRID)}


def test_noise_picks_strong_regularisation_and_signal_weak():
    config = BaselineConfig(C_grid=GRID)
    noise = logistic_regression(
        _noise("q", 120, 0), _noise("q", 30, 1), FIELDS, config, valid=_noise("q", 300, 2)
    )
    signal = logistic_regression(_by_country("q", SIGNAL, 5), _by_country("q", SIGNAL, 1), FIELDS, config)
    assert fitted_settings(noise)["C"] == min(GRID)
    assert fitted_settings(signal) == {"C": max(GRID), "C_chosen_by": "cross-validation", "fit_answers": 30}


def test_probabilities_are_distributions_in_option_order():
    codes = (5, 1, 3)  # not sorted: probs follow option_codes, not the codes' values
    answer_of = {"a": 5, "b": 1, "c": 3}
    train = _by_country("q", answer_of, 5, codes)
    test = _by_country("q", answer_of, 1, codes)
    predictions = logistic_regression(train, test, FIELDS, BaselineConfig(C_grid=(10.0,)))
    probs = np.stack(predictions["probs"])
    assert probs.shape == (len(test), 3)
    assert (probs >= 0).all() and np.allclose(probs.sum(axis=1), 1)
    truth = [codes.index(code) for code in test["target_code"]]
    assert list(probs.argmax(axis=1)) == truth
    assert list(predictions["predicted_code"]) == list(test["target_code"])


def test_one_value_grid_is_that_c_fitted_as_sklearn_does():
    train = _noise("q", 60, 3)
    test = _noise("q", 12, 4)
    predictions = logistic_regression(train, test, FIELDS, BaselineConfig(C_grid=(0.5,)))
    encoder = OneHotEncoder(handle_unknown="ignore")
    model = LogisticRegression(C=0.5, max_iter=1000, random_state=0)
    model.fit(encoder.fit_transform(train[FIELDS]), train["target_code"] - 1)
    expected = model.predict_proba(encoder.transform(test[FIELDS]))
    np.testing.assert_allclose(np.stack(predictions["probs"]), expected, atol=1e-10)
    assert fitted_settings(predictions)["C_chosen_by"] == "fixed"


def test_an_option_no_training_answer_chose_gets_the_smoothed_population_share():
    train = _by_country("q", {"a": 1, "b": 2, "c": 1}, 2)  # nobody answers 3
    test = _answers("q", ["c"], ["f"], [3])
    predictions = logistic_regression(train, test, FIELDS, BaselineConfig(C_grid=(1.0,), smoothing=1.0))
    probs = np.stack(predictions["probs"])
    assert probs[0, 2] == pytest.approx(1.0 / (len(train) + 3))  # Laplace share of an unseen option
    assert probs.sum() == pytest.approx(1.0) and probs[0, 0] > probs[0, 1]
    empirical = logistic_regression(train, test, FIELDS, BaselineConfig(C_grid=(1.0,), smoothing=0.0))
    assert np.stack(empirical["probs"])[0, 2] == 0.0


def test_pool_variant_fits_on_every_training_answer():
    sample = _by_country("q", SIGNAL, 1)
    pool = pd.concat([sample, _by_country("q", SIGNAL, 6)], ignore_index=True)
    test = _by_country("q", SIGNAL, 1)
    config = BaselineConfig(C_grid=GRID)
    from_sample = logistic_regression(sample, test, FIELDS, config, valid=test, pool=pool)
    from_pool = logistic_pool(sample, test, FIELDS, config, valid=test, pool=pool)
    assert fitted_settings(from_sample)["fit_answers"] == len(sample)
    assert fitted_settings(from_pool)["fit_answers"] == len(pool)
    assert (from_pool["fit_rows"] > from_sample["fit_rows"]).all()


def test_every_question_falling_back_needs_no_c():
    train = _answers("q", ["a", "b", "c"], ["f", "f", "m"], [2, 2, 2])
    predictions = logistic_regression(train, train, FIELDS, valid=train)
    assert predictions["fallback"].all() and predictions["C"].isna().all()
    assert fitted_settings(predictions)["C"] is None


def test_other_baselines_record_no_fit_settings():
    train = _by_country("q", SIGNAL, 1)
    assert fitted_settings(population_majority(train, train)) == {}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"C_grid": ()}, "C_grid is empty"),
        ({"C_grid": (1.0, 0.1)}, "strictly increasing"),
        ({"C_grid": (0.0, 1.0)}, "> 0"),
        ({"cv_folds": 1}, "cv_folds"),
    ],
)
def test_bad_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=message):
        BaselineConfig(**settings)


def test_validation_question_missing_from_training_is_named():
    train = _by_country("q1", SIGNAL, 2)
    valid = pd.concat([_by_country("q1", SIGNAL, 1), _by_country("q2", SIGNAL, 1)], ignore_index=True)
    with pytest.raises(ValueError, match="'q2' has validation answers but no train answers"):
        logistic_regression(train, train, FIELDS, valid=valid)


def test_test_question_missing_from_pool_is_named():
    pool = _by_country("q1", SIGNAL, 2)
    with pytest.raises(ValueError, match="'q2' has test answers but no pool answers"):
        logistic_pool(pool, _by_country("q2", SIGNAL, 1), FIELDS, pool=pool)


def test_pool_variant_without_pool_is_refused():
    train = _by_country("q", SIGNAL, 2)
    with pytest.raises(ValueError, match="pass pool="):
        logistic_pool(train, train, FIELDS)


def test_empty_or_mismatched_validation_answers_are_named():
    train = _by_country("q", SIGNAL, 2)
    with pytest.raises(ValueError, match="validation answers DataFrame is empty"):
        logistic_regression(train, train, FIELDS, valid=train.iloc[:0])
    other_options = _by_country("q", {"a": 1, "b": 2, "c": 4}, 1, codes=(1, 2, 4))
    with pytest.raises(ValueError, match="validation answers row 0: question 'q' has option_codes"):
        logistic_regression(train, train, FIELDS, valid=other_options)
