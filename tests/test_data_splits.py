"""Splits by respondent, held-out profiles and questions, stratified sampling, human distributions."""

import pytest

from cuma.data.builtin import load_builtin
from cuma.data.distribution import human_distribution
from cuma.data.errors import DataError
from cuma.data.examples import build_examples
from cuma.data.splits import (
    held_out_profile_split,
    held_out_question_split,
    pick_cells,
    random_split,
    sample_answers,
    sample_stratified,
)


@pytest.fixture(scope="module")
def examples():
    return build_examples(load_builtin("gss-spending-2018"))


def people(items):
    return {ex.respondent_id for ex in items}


def test_random_split_is_disjoint_by_respondent_and_reproducible(examples):
    split = random_split(examples, fractions=(0.8, 0.1, 0.1), seed=3)
    assert sum(split.sizes().values()) == len(examples)
    assert not people(split.train) & people(split.test)
    assert not people(split.train) & people(split.valid)
    assert not people(split.valid) & people(split.test)
    n = len(people(examples))
    assert abs(len(people(split.train)) - 0.8 * n) <= 1
    again = random_split(examples, fractions=(0.8, 0.1, 0.1), seed=3)
    assert people(again.test) == people(split.test)
    assert people(random_split(examples, seed=4).test) != people(split.test)


def test_split_apply_keeps_groups_together(examples):
    split = random_split(examples, seed=0)
    # a second view of the same respondents (e.g. other questions, or persona prompts) lands the same way
    other = split.apply(reversed(examples))
    assert {name: people(other[name]) for name in ("train", "valid", "test")} == {
        name: people(split[name]) for name in ("train", "valid", "test")
    }


def test_held_out_profile_split_excludes_the_cells_from_training(examples):
    cells = [
        {"gender": "female", "race": "black"},
        {"age_group": "18-29 years old", "party": "strong Republican"},
    ]

    def in_cells(ex):
        return any(all(ex.profile.get(k) == v for k, v in cell.items()) for cell in cells)

    split = held_out_profile_split(examples, cells, seed=1)
    assert split.test and all(in_cells(ex) for ex in split.test)
    assert not any(in_cells(ex) for ex in split.train + split.valid)
    assert len(split.test) == sum(in_cells(ex) for ex in examples)
    assert not people(split.train) & people(split.test)
    with pytest.raises(DataError, match="matches no respondent"):
        held_out_profile_split(examples, [{"gender": "female", "race": "martian"}])
    with pytest.raises(DataError, match="unknown profile fields"):
        held_out_profile_split(examples, [{"planet": "mars"}])


def test_pick_cells_returns_populated_combinations(examples):
    cells = pick_cells(examples, ["gender", "race"], 2, seed=0, min_groups=50)
    assert len(cells) == 2 and all(set(c) == {"gender", "race"} for c in cells)
    assert pick_cells(examples, ["gender", "race"], 2, seed=0, min_groups=50) == cells
    with pytest.raises(DataError, match="cells"):
        pick_cells(examples, ["gender"], 3)


def test_held_out_question_split(examples):
    split = held_out_question_split(examples, ["natspac", "natarms"], seed=0)
    assert {ex.question_id for ex in split.test} == {"natspac", "natarms"}
    assert not {ex.question_id for ex in split.train + split.valid} & {"natspac", "natarms"}
    assert not people(split.train) & people(split.test)
    with pytest.raises(DataError, match="natzzz"):
        held_out_question_split(examples, ["natzzz"])
    no_valid = held_out_question_split(examples, ["natspac"], fractions=(0.8, 0.0, 0.2), seed=0)
    assert not no_valid.valid and no_valid.train and no_valid.test


def test_empty_split_is_an_error_naming_the_dataset(examples):
    few = [ex for ex in examples if ex.respondent_id in {"1", "2"}]
    with pytest.raises(
        DataError,
        match=r"^gss, column .respondent_id.: the valid split is empty after a random split by respondent_id",
    ):
        random_split(few, fractions=(0.8, 0.1, 0.1), source="gss")
    with pytest.raises(
        DataError, match=r"^gss, column .respondent_id.: the test split is empty after holding out questions"
    ):
        held_out_question_split(few, ["natspac"], fractions=(0.5, 0.5, 0.0), source="gss")


def test_stratified_sampling_is_even_and_reproducible(examples):
    sample = sample_stratified(examples, 180, seed=0)
    per_question = {}
    for ex in sample:
        per_question[ex.question_id] = per_question.get(ex.question_id, 0) + 1
    assert set(per_question.values()) == {10} and len(per_question) == 18
    assert sample == sample_stratified(examples, 180, seed=0)
    assert sample != sample_stratified(examples, 180, seed=1)
    by_question = {}
    for ex in examples:
        by_question.setdefault(ex.question_id, []).append(ex)
    small = [ex for qid, rows in by_question.items() for ex in rows[: 3 if qid == "natspac" else 10]]
    taken = sample_stratified(small, 90, seed=0)
    counts = {qid: sum(ex.question_id == qid for ex in taken) for qid in by_question}
    assert len(taken) == 90 and counts.pop("natspac") == 3 and min(counts.values()) == 5
    with pytest.raises(DataError, match="cannot sample"):
        sample_stratified(examples[:10], 11)
    split = random_split(examples, seed=0).sample({"train": 360, "test": 90}, seed=0)
    assert (len(split.train), len(split.test)) == (360, 90)


def test_human_distribution_counts_answers(examples):
    dist = human_distribution(examples)
    natspac = dist[dist.question_id == "natspac"].set_index("code")
    assert natspac["count"].to_dict() == {1: 494, 0: 1043, -1: 549}  # published stevedata counts
    assert natspac["share"].sum() == pytest.approx(1.0)
    by = human_distribution(examples, by="gender")
    assert set(by.columns) == {"question_id", "gender", "code", "count", "share"}
    totals = by[by.question_id == "natspac"].groupby("code")["count"].sum().to_dict()
    assert totals == natspac["count"].to_dict()
    assert by.groupby(["question_id", "gender"])["share"].sum().round(9).eq(1).all()


def test_sample_answers_before_building_examples():
    survey = load_builtin("gss-spending-2018")
    small = sample_answers(survey, 360, seed=0)
    assert len(small.answers) == 360
    assert small.answers.groupby("question_id").size().eq(20).all()
    assert set(small.respondents) == set(small.answers.respondent_id)
    assert small.answers.equals(sample_answers(survey, 360, seed=0).answers)
    assert len(build_examples(small)) == 360
