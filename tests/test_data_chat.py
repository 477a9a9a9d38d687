"""PRISM and Community Alignment loaders on schema-faithful fixtures; the collators on their rows."""

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch

from cuma.data.collate import PreferenceCollator, PromptCollator, SFTCollator
from cuma.data.community_alignment import load_community_alignment
from cuma.data.errors import DataError
from cuma.data.prism import load_prism
from cuma.data.render import IGNORE_INDEX, render_prompt
from cuma.tiny import tiny_tokenizer

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def prism():
    return load_prism(FIXTURES / "prism")


@pytest.fixture(scope="module")
def ca():
    return load_community_alignment(FIXTURES / "community_alignment")


def test_prism_sft_rows_follow_the_chosen_responses(prism):
    conversations = [
        json.loads(line) for line in (FIXTURES / "prism" / "conversations.jsonl").read_text().splitlines()
    ]
    first = conversations[2]  # three turns, all usable
    rows = [ex for ex in prism.sft if ex.conversation_id == first["conversation_id"]]
    assert [ex.turn for ex in rows] == [0, 1, 2]
    chosen = [m["content"] for m in first["conversation_history"] if m["role"] == "model" and m["if_chosen"]]
    assert [ex.answer for ex in rows] == chosen
    last = rows[-1].messages
    assert [m["role"] for m in last] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert [m["content"] for m in last if m["role"] == "assistant"] == chosen
    assert last[0]["content"].startswith("User Profile: Country: ")
    pairs = [p for p in prism.dpo if p.conversation_id == first["conversation_id"]]
    assert [p.turn for p in pairs] == [0, 0, 0, 1, 2]  # 4 responses on the first turn, then 2
    assert all(p.chosen == chosen[p.turn] and p.rejected != p.chosen for p in pairs)
    assert all(p.prompt_messages == rows[p.turn].prompt_messages for p in pairs)


def test_prism_reports_unusable_rows(prism):
    summary = prism.summary.units
    assert (summary["conversations"].read, summary["conversations"].kept) == (15, 13)
    assert summary["conversations"].dropped == {
        "turn without a chosen response": 1,
        "no survey row for the user": 1,
    }
    assert summary["conversations"].notes == {"truncated at an unusable turn": 1}
    assert summary["turns"].dropped == {
        "conversation ends on a user turn": 1,
        "turn without a chosen response": 1,
        "after an unusable turn": 1,
        "no survey row for the user": 1,
    }
    # c7: of its three other responses one is empty and one repeats the chosen response
    assert summary["DPO pairs"].dropped == {
        "rejected response is empty": 1,
        "rejected response is the chosen one": 1,
    }
    assert len([p for p in prism.dpo if p.conversation_id == "c7"]) == 1
    ends_on_user = [ex for ex in prism.sft if ex.conversation_id == "c13"]
    assert len(ends_on_user) == 1 and ends_on_user[0].answer == "hi, chosen"
    assert all(ex.messages[-1]["role"] == "assistant" for ex in prism.sft)
    assert all(ex.profile.get("gender") is None for ex in prism.sft if ex.annotator_id == "user6")
    assert "Prefer not to say" not in " ".join(ex.profile_text for ex in prism.sft)


def test_community_alignment_rows_pairs_and_choice_sets(ca):
    summary = ca.summary.units
    assert summary["conversations"].dropped == {"no prompt in the first turn": 1}
    assert summary["turns"].dropped == {
        "turn without a preferred response": 1,
        "after an unusable turn": 1,
        "after a turn without a prompt": 1,
    }
    assert summary["conversations"].notes == {
        "truncated at an unusable turn": 1,
        "truncated at a turn without a prompt": 1,
    }
    assert [ex.turn for ex in ca.sft if ex.conversation_id == "ca5"] == [
        0,
        1,
    ]  # its fourth turn follows a gap
    assert summary["DPO pairs"].dropped == {
        "rejected response is empty": 1,
        "rejected response is the chosen one": 1,
    }
    assert summary["choice sets"].dropped == {
        "first turn lacks one of the four responses": 1,
        "no prompt in the first turn": 1,
    }
    row = next(ex for ex in ca.sft if ex.conversation_id == "ca3" and ex.turn == 2)
    assert row.prompt_messages[0]["content"].startswith("User Profile: Age: ")
    assert len([m for m in row.messages if m["role"] == "assistant"]) == 3
    assert len([p for p in ca.dpo if p.conversation_id == "ca1"]) == 3 * 2  # 2 turns x 3 other responses
    choice = next(ex for ex in ca.choice if ex.question_id == "ca1")
    assert choice.option_letters == ("A", "B", "C", "D") and choice.respondent_id == "a0"
    assert (
        choice.option_labels[choice.option_letters.index(choice.target_letter)]
        == "response b to turn 0 of ca1"
    )
    assert not choice.ordinal
    assert len(ca.choice) == 19 - 2


@pytest.mark.parametrize("by", ["conversation", "annotator"])
def test_chat_splits_never_share_a_group(ca, prism, by):
    for data in (ca, prism):
        parts = data.split(by, fractions=(0.6, 0.2, 0.2), seed=0)
        key = "conversation_id" if by == "conversation" else "annotator_id"
        choice_key = "question_id" if by == "conversation" else "respondent_id"
        owner = {}
        for what, split in parts.items():
            for name in ("train", "valid", "test"):
                for item in split[name]:
                    gid = getattr(item, choice_key if what == "choice" else key)
                    assert owner.setdefault(gid, name) == name
        assert sum(len(parts["sft"][n]) for n in ("train", "valid", "test")) == len(data.sft)


def test_chat_collators_mask_the_chosen_response(prism):
    tok = tiny_tokenizer()
    batch = SFTCollator(tok, include_end_of_turn=True)(prism.sft[:3])
    for i, ex in enumerate(prism.sft[:3]):
        labelled = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX]
        assert tok.decode(labelled) == ex.answer + "<|im_end|>"
    pairs = PreferenceCollator(tok)(prism.dpo[:4])
    for i, pair in enumerate(prism.dpo[:4]):
        for side in ("chosen", "rejected"):
            labels = pairs[f"{side}_labels"][i]
            assert tok.decode(labels[labels != IGNORE_INDEX]) == getattr(pair, side) + "<|im_end|>"
    prompts = PromptCollator(tok)(prism.sft[:3])
    assert "option_token_ids" not in prompts and prompts["input_ids"].shape[0] == 3


@pytest.mark.parametrize("side", ["left", "right"])
def test_prompt_batches_number_positions_as_each_row_alone(ca, side):
    tok = tiny_tokenizer()
    rows = ca.choice[:5]
    batch = PromptCollator(tok, padding_side=side)(rows)
    for i, ex in enumerate(rows):
        length = len(render_prompt(tok, ex.prompt_messages))
        real = batch["attention_mask"][i].bool()
        assert batch["position_ids"][i][real].tolist() == list(range(length))
        assert int(batch["answer_positions"][i]) == real.nonzero().max()


def test_prompt_collator_encodes_once_and_collates_any_grouping(ca):
    tok = tiny_tokenizer()
    collator = PromptCollator(tok, padding_side="right")
    encoded = [collator.encode(ex) for ex in ca.choice[:4]]
    whole, part = collator(ca.choice[:4]), collator.collate(encoded[2:])
    assert whole.keys() == part.keys()
    assert whole["option_token_ids"][2:] == part["option_token_ids"]
    width = part["input_ids"].shape[1]
    assert torch.equal(whole["input_ids"][2:, :width], part["input_ids"])


def test_prompt_collator_passes_embeddings_as_told(ca):
    tok = tiny_tokenizer()
    vectors = [
        dataclasses.replace(ex, embedding=torch.full((3,), float(i))) for i, ex in enumerate(ca.choice[:3])
    ]
    assert torch.equal(
        PromptCollator(tok)(vectors)["demographic_embeds"][:, 0], torch.tensor([0.0, 1.0, 2.0])
    )
    assert "demographic_embeds" not in PromptCollator(tok, demographics=False)(vectors)
    assert "demographic_embeds" not in PromptCollator(tok)(ca.choice[:3])
    missing = ca.choice[3]
    with pytest.raises(
        DataError, match=rf"respondent_id={missing.respondent_id}, .*: no demographic embedding"
    ):
        PromptCollator(tok, demographics=True)([*vectors, missing])
    with pytest.raises(DataError, match="some rows of the batch have a demographic embedding"):
        PromptCollator(tok)([*vectors, missing])


def test_a_prompt_batch_mixing_chat_and_choice_rows_is_an_error(prism, ca):
    with pytest.raises(DataError, match=r"conversation_id=\w+, turn=\d+: some rows .* option letters"):
        PromptCollator(tiny_tokenizer())([ca.choice[0], prism.sft[0]])


def test_empty_chat_split_names_the_dataset(prism):
    source = re.escape(str(FIXTURES / "prism"))
    with pytest.raises(
        DataError, match=rf"^{source}, column 'annotator_id': the valid split of prism is empty"
    ):
        prism.split("annotator", fractions=(0.95, 0.05, 0.0))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_bad_chat_inputs_name_file_row_and_field(tmp_path):
    rows = [
        json.loads(line)
        for line in (FIXTURES / "community_alignment" / "benchmark.jsonl").read_text().splitlines()
    ]
    rows[4]["first_turn_preferred_response"] = "response_e"
    write_jsonl(tmp_path / "ca.jsonl", rows)
    with pytest.raises(
        DataError, match=r"ca\.jsonl, row 5, column 'first_turn_preferred_response'.*response_e"
    ):
        load_community_alignment(tmp_path / "ca.jsonl")
    del rows[4]["first_turn_preferred_response"]
    rows[2]["conversation_id"] = rows[1]["conversation_id"]
    rows[2]["annotator_id"] = rows[1]["annotator_id"]
    write_jsonl(tmp_path / "ca.jsonl", rows)
    with pytest.raises(DataError, match=r"row 3.*duplicate"):
        load_community_alignment(tmp_path / "ca.jsonl")
    del rows[0]["annotator_id"]
    write_jsonl(tmp_path / "ca.jsonl", rows)
    with pytest.raises(DataError, match=r"row 1, column 'annotator_id'"):
        load_community_alignment(tmp_path / "ca.jsonl")
    folder = tmp_path / "prism"
    folder.mkdir()
    (folder / "survey.jsonl").write_text((FIXTURES / "prism" / "survey.jsonl").read_text())
    (folder / "conversations.jsonl").write_text('{"conversation_id": "c1", "user_id": "user1",\n')
    with pytest.raises(DataError, match=r"conversations\.jsonl, row 1.*not valid JSON"):
        load_prism(folder)
