"""Verifiable survey rewards: the letter parser, exact match and the training cell share."""

import pytest
import torch

from cuma.data.examples import SurveyExample
from cuma.data.profiles import Profile
from cuma.train.rewards import CellShares, cell_share_reward, exact_match_reward, parse_letter

LETTERS = ("A", "B", "C")


def example(rid, target, question="q", **profile):
    letter = LETTERS[[1, 2, 3].index(target)]
    return SurveyExample(
        respondent_id=rid,
        question_id=question,
        profile=Profile(profile),
        profile_text=str(profile),
        prompt_messages=({"role": "user", "content": "?"},),
        option_letters=LETTERS,
        option_codes=(1, 2, 3),
        option_labels=("Agree", "Neither", "Disagree"),
        target_letter=letter,
        target_code=target,
        scale_min=1,
        scale_max=3,
        ordinal=True,
    )


@pytest.mark.parametrize(
    "text",
    [
        "B",
        "B.",
        " (B)",
        "**B**",
        "B) Neither",
        "B. Neither",
        "B\nBecause...",
        "Answer: B",
        "The answer is (B).",
    ],
)
def test_parse_letter_reads_common_answer_forms(text):
    assert parse_letter(text, LETTERS) == "B"


@pytest.mark.parametrize(
    "text", ["", "A lot of people agree", "I think so", "Answer: D", "D.", "b", "Bother"]
)
def test_parse_letter_refuses_what_is_not_an_option_letter(text):
    assert parse_letter(text, LETTERS) is None


def test_exact_match_counts_unparsable_completions_as_zero():
    prompts = [example("1", 2), example("2", 2), example("3", 3), example("4", 1)]
    out = exact_match_reward(["B", "Answer: C", "no idea", "(A)"], prompts)
    assert out.rewards.dtype == torch.float32
    assert out.rewards.tolist() == [1.0, 0.0, 0.0, 1.0]
    assert out.unparsable == 1 and not torch.isnan(out.rewards).any()
    with pytest.raises(ValueError, match="3 completions for 4 prompts"):
        exact_match_reward(["A", "B", "C"], prompts)


def test_cell_share_uses_training_cells_and_falls_back_to_the_population():
    train = [
        example("1", 1, country="NO", gender="f"),
        example("2", 1, country="NO", gender="f"),
        example("3", 3, country="NO", gender="f"),
        example("4", 3, country="GB", gender="m"),
        example("5", 2, country="GB", gender=None),
    ]
    shares = CellShares.from_examples(train, ("country", "gender"))
    prompts = [
        example("9", 3, country="NO", gender="f"),
        example("9", 3, country="NO", gender="f"),
        example("8", 1, country="GB", gender=None),  # missing gender is its own cell
        example("7", 1, country="GB", gender="f"),  # empty cell -> population
        example("7", 1, country="GB", gender="f"),
    ]
    out = cell_share_reward(["A", "C", "B", "A", "nothing"], prompts, shares)
    assert out.rewards.tolist() == pytest.approx([2 / 3, 1 / 3, 1.0, 2 / 5, 0.0])
    assert (out.unparsable, out.fallback) == (1, 1)


def test_cell_share_errors_name_the_problem():
    shares = CellShares.from_examples([example("1", 1, country="NO")], ["country"])
    with pytest.raises(KeyError, match=r"respondent 2: profile has no field\(s\) \['country'\]"):
        cell_share_reward(["A"], [example("2", 1, region="x")], shares)
    with pytest.raises(KeyError, match="question 'other' has no training answers"):
        cell_share_reward(["A"], [example("2", 1, question="other", country="NO")], shares)
    with pytest.raises(ValueError, match="at least one profile field"):
        CellShares.from_examples([example("1", 1, country="NO")], [])
