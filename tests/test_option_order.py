"""data.option_order: seeded, recorded option orders whose probabilities map back to the right codes."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from cuma.config import DataConfig
from cuma.data.collate import SFTCollator
from cuma.data.errors import DataError
from cuma.data.examples import arrange, average_orders, build_examples, check_arrangeable, examples_frame
from cuma.data.experiment import prepare_data
from cuma.data.preferences import survey_preferences
from cuma.data.profiles import Profile
from cuma.data.prompt import option_permutation
from cuma.data.render import IGNORE_INDEX, letter_token_ids
from cuma.data.survey import Question, Survey, answers_frame
from cuma.evaluation.scoring import score_examples
from cuma.metrics import accuracy
from cuma.tiny import tiny_tokenizer

LABELS = ("Too little", "About right", "Too much")


def toy_survey(n: int = 300, labels: tuple[str, ...] = LABELS, first_share: float = 0.8) -> Survey:
    """Three-option questions whose first option is the answer of ``first_share`` of the respondents."""
    rng = np.random.default_rng(0)
    codes = tuple(range(1, len(labels) + 1))
    questions = {
        qid: Question(qid, f"Are we spending enough on {qid}?", codes, labels) for qid in ("q1", "q2")
    }
    respondents = {f"r{i}": Profile(party="dem" if i % 2 else "rep") for i in range(n)}
    rows = {"respondent_id": [], "question_id": [], "code": []}
    for rid in respondents:
        for qid in questions:
            first = rng.random() < first_share
            rows["respondent_id"].append(rid)
            rows["question_id"].append(qid)
            rows["code"].append(1 if first else int(rng.choice(codes[1:])))
    return Survey("toy", questions, respondents, answers_frame(rows))


def shown_options(example) -> dict[str, str]:
    """Letter -> label as the user prompt shows them."""
    lines = example.prompt_messages[-1]["content"].splitlines()
    return dict(line.split(". ", 1) for line in lines if len(line) > 2 and line[1:3] == ". ")


class AlwaysA(nn.Module):
    """A model whose answer-position logits always prefer the letter A, whatever the prompt."""

    def __init__(self, tokenizer) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.vocab = len(tokenizer)
        self.ids = letter_token_ids(tokenizer, ["A", "B", "C"])

    def forward(self, input_ids, **kwargs):
        logits = torch.zeros(input_ids.shape[0], 1, self.vocab)
        logits[:, :, self.ids] = torch.tensor([3.0, 1.0, 0.0])
        return SimpleNamespace(logits=logits)


def test_shuffled_orders_are_seeded_by_the_seed_and_the_ids_alone():
    order = option_permutation("shuffled", 5, seed=3, respondent_id="r1", question_id="q1")
    assert sorted(order) == list(range(5))
    assert order == option_permutation("shuffled", 5, seed=3, respondent_id="r1", question_id="q1")
    draws = {
        option_permutation("shuffled", 5, seed=s, respondent_id="r1", question_id="q1") for s in range(20)
    }
    assert len(draws) > 10
    assert option_permutation("reversed", 3, seed=0, respondent_id="r", question_id="q") == (2, 1, 0)
    with pytest.raises(ValueError, match="arrangement must be one of"):
        option_permutation("sorted", 3, seed=0, respondent_id="r", question_id="q")


def test_a_shuffled_example_letters_its_options_as_its_prompt_shows_them():
    survey = toy_survey(40)
    fixed = build_examples(survey, persona=True)
    shuffled = build_examples(survey, persona=True, arrangement="shuffled", seed=7)
    assert [ex.target_code for ex in shuffled] == [ex.target_code for ex in fixed]
    assert len({ex.permutation for ex in shuffled}) > 3
    for ex in shuffled:
        assert ex.option_codes == (1, 2, 3) and ex.option_labels == LABELS  # the question's own order
        shown = shown_options(ex)
        assert list(shown) == ["A", "B", "C"]
        assert [shown[letter] for letter in ex.option_letters] == list(ex.option_labels)
        assert [ex.option_labels[i] for i in ex.permutation] == list(shown.values())
        assert shown[ex.target_letter] == LABELS[ex.target_code - 1]
    # the same draw whether built shuffled or arranged afterwards, with or without the persona
    again = arrange(fixed, survey, "shuffled", seed=7, persona=False)
    assert [ex.permutation for ex in again] == [ex.permutation for ex in shuffled]
    assert again[0].prompt_messages[1] == shuffled[0].prompt_messages[1]
    assert again[0].prompt_messages[0] != shuffled[0].prompt_messages[0]


def test_training_labels_the_letter_the_prompt_shows_for_the_answer():
    tokenizer = tiny_tokenizer()
    examples = build_examples(toy_survey(12), arrangement="shuffled", seed=1)
    batch = SFTCollator(tokenizer)(examples)
    for ex, labels in zip(examples, batch["labels"], strict=True):
        (token,) = labels[labels != IGNORE_INDEX].tolist()
        assert tokenizer.decode([token]) == ex.target_letter
        assert shown_options(ex)[ex.target_letter] == LABELS[ex.target_code - 1]


def test_probabilities_come_back_in_the_questions_option_order():
    tokenizer = tiny_tokenizer()
    examples = build_examples(toy_survey(30), arrangement="shuffled", seed=2)
    frame = score_examples(AlwaysA(tokenizer), tokenizer, examples, batch_size=8)
    want = torch.softmax(torch.tensor([3.0, 1.0, 0.0]), dim=0).numpy()
    for ex, row in zip(examples, frame.itertuples(), strict=True):
        assert row.option_codes == [1, 2, 3]
        np.testing.assert_allclose(np.asarray(row.probs)[list(ex.permutation)], want, rtol=1e-5)
        assert row.predicted_code == ex.option_codes[ex.permutation[0]]  # the option shown at A
        assert row.predicted_letter == "A"
        assert row.target_letter == ex.target_letter
        assert row.permutations == [list(ex.permutation)]


def test_an_always_a_model_no_longer_scores_the_share_of_the_first_option():
    tokenizer = tiny_tokenizer()
    survey = toy_survey(300, first_share=0.8)
    share_first = float((survey.answers["code"] == 1).mean())
    model = AlwaysA(tokenizer)
    fixed = score_examples(model, tokenizer, build_examples(survey), batch_size=64)
    shuffled = score_examples(
        model, tokenizer, build_examples(survey, arrangement="shuffled", seed=0), batch_size=64
    )
    assert accuracy(fixed) == pytest.approx(share_first)
    shown_first = float((shuffled["target_letter"] == "A").mean())
    assert accuracy(shuffled) == pytest.approx(shown_first)
    assert abs(accuracy(shuffled) - share_first) > 0.3  # about 1/3 of the answers are shown at A


def test_both_orders_average_the_fixed_and_the_reversed_probabilities():
    tokenizer = tiny_tokenizer()
    survey = toy_survey(20)
    fixed = build_examples(survey)
    reversed_ = arrange(fixed, survey, "reversed", seed=0, persona=False)
    model = AlwaysA(tokenizer)
    frames = [score_examples(model, tokenizer, rows, batch_size=8) for rows in (fixed, reversed_)]
    joined = average_orders(frames)
    p = torch.softmax(torch.tensor([3.0, 1.0, 0.0]), dim=0).numpy()
    for row in joined.itertuples():
        np.testing.assert_allclose(row.probs, (p + p[::-1]) / 2, rtol=1e-5)
        assert row.permutations == [[0, 1, 2], [2, 1, 0]]
        assert row.predicted_code in (1, 3)
    mean = np.mean([np.stack(f["probs"].tolist()) for f in frames], axis=0)
    np.testing.assert_allclose(np.stack(joined["probs"].tolist()), mean)
    with pytest.raises(ValueError, match="not the examples of predictions 0"):
        average_orders([frames[0], frames[1].iloc[::-1].reset_index(drop=True)])


def test_a_question_with_a_fixed_position_option_cannot_be_reordered():
    survey = toy_survey(10, labels=("Yes", "No", "Don't know"))
    assert build_examples(survey)  # its own order is fine
    with pytest.raises(
        DataError, match=r"data\.option_order='shuffled': question 'q1' has option 3 \"Don't know\""
    ):
        check_arrangeable(survey, "data.option_order='shuffled'")
    with pytest.raises(DataError, match=r"'reversed'.*question 'q1'"):
        build_examples(survey, arrangement="reversed")
    substantive = toy_survey(10, labels=("Do good to other people", "Nothing", "Others first"))
    check_arrangeable(substantive, "data.option_order='both'")


@pytest.fixture(scope="module")
def orders():
    config = DataConfig(n_train=120, n_test=60, n_heldout=30, heldout_cells={"race": ["black"]})
    return {
        name: prepare_data(dataclasses.replace(config, option_order=name))
        for name in ("fixed", "shuffled", "both")
    }


def keys(rows):
    return [(ex.respondent_id, ex.question_id) for ex in rows]


def is_identity(ex) -> bool:
    return ex.permutation == tuple(range(len(ex.option_codes)))


def test_the_option_order_changes_how_the_sample_is_shown_not_the_sample(orders):
    fixed, shuffled, both = orders["fixed"], orders["shuffled"], orders["both"]
    for split in fixed.splits:
        assert keys(shuffled.splits[split]) == keys(both.splits[split]) == keys(fixed.splits[split])
    assert all(is_identity(ex) for rows in fixed.splits.values() for ex in rows)
    assert not all(is_identity(ex) for ex in shuffled.splits["test"])
    assert [ex.permutation for ex in both.splits["train"]] == [
        ex.permutation for ex in shuffled.splits["train"]
    ]
    assert all(is_identity(ex) for ex in both.splits["test"])
    for ex in shuffled.splits["train"]:  # the persona-free twin is shown in the same order
        twin = shuffled.twins[ex.respondent_id, ex.question_id]
        assert twin.permutation == ex.permutation and twin.prompt_messages[1] == ex.prompt_messages[1]
        assert twin.prompt_messages[0] != ex.prompt_messages[0]


def test_both_scores_each_example_in_the_fixed_and_the_reversed_order(orders):
    assert len(orders["shuffled"].score_orders("test", persona=True)) == 1
    fixed_rows, reversed_rows = orders["both"].score_orders("heldout", persona=False)
    assert keys(fixed_rows) == keys(reversed_rows)
    for a, b in zip(fixed_rows, reversed_rows, strict=True):
        assert b.permutation == a.permutation[::-1]
        assert b.prompt_messages[0] == a.prompt_messages[0]  # still persona-free


def test_survey_preference_pairs_use_the_examples_option_order(orders):
    data = orders["shuffled"]
    prefs = survey_preferences(data, "all")
    examples = {(ex.respondent_id, ex.question_id): ex for ex in data.splits["train"]}
    assert prefs.pairs["train"]
    for pair in prefs.pairs["train"]:
        ex = examples[pair.respondent_id, pair.question_id]
        letter = dict(zip(ex.option_codes, ex.option_letters, strict=True))
        assert pair.prompt_messages == ex.prompt_messages
        assert (pair.chosen, pair.rejected) == (letter[pair.chosen_code], letter[pair.rejected_code])


def test_the_examples_frame_records_the_order_shown(orders):
    frame = examples_frame(orders["shuffled"].splits["test"])
    assert frame["permutations"].tolist() == [
        [list(ex.permutation)] for ex in orders["shuffled"].splits["test"]
    ]
