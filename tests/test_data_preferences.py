"""Survey-derived preference pairs: leak-free splits, the three pairing modes, and collation."""

import dataclasses
from collections import Counter
from pathlib import Path

import pytest
import torch

from cuma.config import DataConfig
from cuma.data.collate import PreferenceCollator
from cuma.data.errors import DataError
from cuma.data.experiment import prepare_data
from cuma.data.preferences import (
    NO_TRAINING_ANSWERS,
    PAIRING_MODES,
    SAME_AS_MAJORITY,
    build_pairs,
    check_disjoint,
    majority_answers,
    summary_frame,
    survey_preferences,
)
from cuma.data.render import IGNORE_INDEX
from cuma.tiny import tiny_tokenizer

TOY = str(Path(__file__).parent / "fixtures" / "survey" / "toy.yaml")


@pytest.fixture(scope="module")
def gss():
    return prepare_data(DataConfig(n_train=400, n_test=150, n_heldout=150, heldout_cells={"race": ["black"]}))


@pytest.fixture(scope="module")
def toy():
    config = DataConfig(
        dataset=TOY, valid_fraction=0.0, test_fraction=0.25, heldout_cells={"country": ["Norway"]}
    )
    return prepare_data(config)


class CountingEncoder:
    """Stands in for the demographic encoder: one distinct vector per distinct profile text."""

    def encode(self, texts):
        return torch.arange(len(texts) * 3, dtype=torch.float32).view(len(texts), 3)


def people(rows):
    return {row.respondent_id for row in rows}


@pytest.mark.parametrize("mode", PAIRING_MODES)
def test_pairs_come_from_their_own_splits_respondents(gss, mode):
    prefs = survey_preferences(gss, mode)
    for name, rows in gss.splits.items():
        assert prefs.pairs[name], name
        assert people(prefs.pairs[name]) <= people(rows)
    names = list(gss.splits)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not people(prefs.pairs[a]) & people(prefs.pairs[b]), (a, b)
    assert all(p.profile["race"] != "black" for p in prefs.pairs["train"] + prefs.pairs["test"])
    assert all(p.profile["race"] == "black" for p in prefs.pairs["heldout"])
    assert all(p.chosen != p.rejected and p.chosen_code != p.rejected_code for p in prefs.pairs["train"])


def test_toy_held_out_cells_stay_held_out(toy):
    prefs = survey_preferences(toy, "all")
    assert prefs.pairs["heldout"] and all(p.profile["country"] == "Norway" for p in prefs.pairs["heldout"])
    assert all(p.profile["country"] != "Norway" for p in prefs.pairs["train"] + prefs.pairs["test"])


def test_majority_mode_rejects_the_training_majority_and_counts_skips(gss):
    prefs = survey_preferences(gss, "majority")
    train = gss.splits["train"]
    by_question = {}
    for ex in train:
        by_question.setdefault(ex.question_id, Counter())[ex.target_code] += 1
    assert set(prefs.majority) == set(by_question)
    for qid, counts in by_question.items():
        assert counts[prefs.majority[qid]] == max(counts.values())
    for name, rows in gss.splits.items():
        same = sum(ex.target_code == prefs.majority[ex.question_id] for ex in rows)
        summary = prefs.summaries[name]
        assert summary.skipped.get(SAME_AS_MAJORITY, 0) == same > 0
        assert summary.pairs == len(prefs.pairs[name]) == len(rows) - same
        assert all(p.rejected_code == prefs.majority[p.question_id] for p in prefs.pairs[name])


def test_majority_is_computed_from_training_answers_only(toy):
    train = [dataclasses.replace(ex, target_code=1, target_letter="A") for ex in toy.splits["train"]]
    train = [ex for ex in train if ex.question_id == "q_culture"]
    held = [ex for ex in toy.splits["heldout"] if ex.question_id == "q_culture"]
    held = [dataclasses.replace(ex, target_code=3, target_letter="C") for ex in held]
    held[0] = dataclasses.replace(held[0], target_code=1, target_letter="A")
    assert train and len(held) >= 2
    pairs, summary = build_pairs(held, "majority", majority=majority_answers(train), split="heldout")
    assert {p.rejected for p in pairs} == {"A"}  # the training majority, though most held-out answers are C
    assert summary.skipped == {SAME_AS_MAJORITY: 1}
    assert summary.pairs == len(held) - 1


def test_majority_mode_counts_questions_without_training_answers(toy):
    rows = toy.splits["test"]
    pairs, summary = build_pairs(rows, "majority", majority={}, split="test")
    assert pairs == [] and summary.skipped == {NO_TRAINING_ANSWERS: len(rows)}
    with pytest.raises(ValueError, match="needs the training majority"):
        build_pairs(rows, "majority")
    with pytest.raises(ValueError, match="pairing mode must be one of"):
        build_pairs(rows, "everything")


def test_all_and_random_modes(gss):
    rows = gss.splits["train"]
    every, summary = build_pairs(rows, "all")
    assert len(every) == summary.pairs == sum(len(ex.option_codes) - 1 for ex in rows)
    one, _ = build_pairs(rows, "random", seed=3)
    assert len(one) == len(rows)
    assert {(p.respondent_id, p.question_id, p.rejected) for p in one} <= {
        (p.respondent_id, p.question_id, p.rejected) for p in every
    }
    again, _ = build_pairs(rows[::-1][:50], "random", seed=3)
    drawn = {(p.respondent_id, p.question_id): p.rejected for p in one}
    assert all(drawn[p.respondent_id, p.question_id] == p.rejected for p in again)
    other, _ = build_pairs(rows, "random", seed=4)
    assert [p.rejected for p in other] != [p.rejected for p in one]


def test_overlapping_splits_are_refused(toy):
    splits = {"train": toy.splits["train"], "test": toy.splits["test"] + toy.splits["train"][:1]}
    with pytest.raises(DataError, match="respondent is in both the train and the test split"):
        check_disjoint(splits, source="toy")


def test_pairs_collate_with_their_embeddings(toy):
    data = toy.with_embeddings(CountingEncoder())
    prefs = survey_preferences(data, "all")
    pairs = prefs.pairs["heldout"][:5]
    tokenizer = tiny_tokenizer()
    batch = PreferenceCollator(tokenizer, include_end_of_turn=False)(pairs)
    expected = torch.stack([torch.as_tensor(p.embedding) for p in pairs])
    assert torch.equal(batch["demographic_embeds"], expected)
    assert batch["profile_texts"] == [p.profile_text for p in pairs]
    for side in ("chosen", "rejected"):
        labels = batch[f"{side}_labels"]
        for row, pair in zip(labels, pairs, strict=True):
            assert tokenizer.decode(row[row != IGNORE_INDEX]) == getattr(pair, side)
    with_end = PreferenceCollator(tokenizer)(pairs)
    assert (with_end["chosen_labels"] != IGNORE_INDEX).sum() > (labels != IGNORE_INDEX).sum()


def test_grpo_prompts_are_the_split_examples_with_or_without_persona(toy):
    with_persona = survey_preferences(toy, "random").prompts
    without = survey_preferences(toy, "random", persona=False).prompts
    for name, rows in toy.splits.items():
        assert with_persona[name] == rows
        assert [(ex.respondent_id, ex.target_letter) for ex in without[name]] == [
            (ex.respondent_id, ex.target_letter) for ex in rows
        ]
    ex = with_persona["train"][0]
    assert ex.profile_text in ex.prompt_messages[0]["content"]
    assert ex.profile_text not in without["train"][0].prompt_messages[0]["content"]


def test_summary_frame_counts_per_mode(gss):
    summaries = [survey_preferences(gss, mode).summaries["train"] for mode in PAIRING_MODES]
    frame = summary_frame(summaries)
    assert list(frame["mode"]) == list(PAIRING_MODES)
    assert frame.loc[frame["mode"] == "all", SAME_AS_MAJORITY].item() == 0
    majority = frame[frame["mode"] == "majority"].iloc[0]
    assert majority["pairs"] + majority[SAME_AS_MAJORITY] == majority["examples"]
    assert "answer is the training majority" in str(summaries[-1])
