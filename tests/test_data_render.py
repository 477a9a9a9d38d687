"""Chat-template rendering, the answer-only loss mask, and the collators."""

from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizer

from cuma.data.collate import PromptCollator, SFTCollator
from cuma.data.embeddings import attach_embeddings
from cuma.data.errors import DataError
from cuma.data.examples import build_examples
from cuma.data.render import IGNORE_INDEX, letter_token_ids, render_prompt, render_training
from cuma.data.spec import load_survey_table
from cuma.tiny import CHATML_TEMPLATE, tiny_tokenizer

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def examples():
    survey = load_survey_table(FIXTURES / "survey" / "toy.csv", FIXTURES / "survey" / "toy.yaml")
    return build_examples(survey, persona=True)


def qwen3_style_tokenizer():
    tok = tiny_tokenizer()
    tok.chat_template = (FIXTURES / "qwen3_style_template.jinja").read_text()
    return tok


@pytest.mark.parametrize("make_tokenizer", [tiny_tokenizer, qwen3_style_tokenizer])
def test_mask_covers_exactly_the_answer(examples, make_tokenizer):
    tok = make_tokenizer()
    for ex in examples[:6]:
        rendered = render_training(tok, ex.prompt_messages, ex.answer)
        answer = [t for t in rendered.labels if t != IGNORE_INDEX]
        assert tok.decode(answer) == ex.target_letter
        assert rendered.labels[rendered.prompt_length] == rendered.input_ids[rendered.prompt_length]
        assert render_prompt(tok, ex.prompt_messages) == rendered.input_ids[: rendered.prompt_length]


def test_qwen3_style_template_puts_the_answer_after_the_empty_think_block(examples):
    tok = qwen3_style_tokenizer()
    rendered = render_training(tok, examples[0].prompt_messages, examples[0].answer)
    prompt = tok.decode(rendered.input_ids[: rendered.prompt_length])
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_end_of_turn_is_labelled_only_on_request(examples):
    tok = tiny_tokenizer()
    rendered = render_training(tok, examples[0].prompt_messages, "Agree fully", include_end_of_turn=True)
    labelled = tok.decode([t for t in rendered.labels if t != IGNORE_INDEX])
    assert labelled == "Agree fully<|im_end|>"


def test_template_that_breaks_the_prefix_is_an_error(examples):
    tok = qwen3_style_tokenizer()
    # without enable_thinking the generation prompt lacks the think block the answer gets
    tok.chat_template = tok.chat_template.replace(
        "enable_thinking is defined and enable_thinking is false", "false"
    )
    with pytest.raises(DataError, match=r"between the generation prompt and the answer.*<think>"):
        render_training(tok, examples[0].prompt_messages, "A")
    tok.chat_template = (
        "{% for m in messages %}{{ m.content }}|{% endfor %}{% if add_generation_prompt %}>{% endif %}"
    )
    with pytest.raises(DataError, match="renders the conversation differently"):
        render_training(tok, examples[0].prompt_messages, "A")


class CharTokenizer(PreTrainedTokenizer):
    """A slow (pure Python) tokenizer, one token per character: it returns no offset mapping."""

    def __init__(self, **kwargs):
        self.vocab = {chr(i): i for i in range(256)}
        super().__init__(**kwargs)
        self.chat_template = CHATML_TEMPLATE

    @property
    def vocab_size(self):
        return len(self.vocab)

    def get_vocab(self):
        return dict(self.vocab)

    def _tokenize(self, text):
        return list(text)

    def _convert_token_to_id(self, token):
        return self.vocab[token]

    def _convert_id_to_token(self, index):
        return chr(index)


def test_slow_tokenizer_is_an_error_that_says_why(examples):
    slow = CharTokenizer()
    assert not slow.is_fast
    with pytest.raises(DataError, match=r"row 1: a fast tokenizer is needed.*offset mapping.*CharTokenizer"):
        render_training(slow, examples[0].prompt_messages, examples[0].answer, where="row 1")


def test_letters_must_be_single_tokens():
    tok = tiny_tokenizer()
    assert len(set(letter_token_ids(tok, list("ABCDEFGHIJK")))) == 11
    with pytest.raises(DataError, match=r"tokens for tokenizer.*one token.*value 'Zz'"):
        letter_token_ids(tok, ["A", "Zz"])


@pytest.mark.parametrize("side", ["right", "left"])
def test_sft_collator_pads_and_masks(examples, side):
    tok = tiny_tokenizer()
    batch = SFTCollator(tok, padding_side=side)(examples[:4])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    for i, ex in enumerate(examples[:4]):
        labels = batch["labels"][i][batch["labels"][i] != IGNORE_INDEX]
        assert tok.decode(labels) == ex.target_letter
        pad = batch["attention_mask"][i] == 0
        assert (batch["input_ids"][i][pad] == tok.pad_token_id).all()
        assert (batch["labels"][i][pad] == IGNORE_INDEX).all()
        if pad.any():
            assert bool(pad[-1] if side == "right" else pad[0])
    assert batch["profile_texts"] == [ex.profile_text for ex in examples[:4]]
    assert "demographic_embeds" not in batch


class FakeEncoder:
    """Deterministic vector per text; counts calls so the test can check one call per distinct text."""

    dim = 4

    def __init__(self):
        self.calls = []

    def encode(self, items):
        self.calls.append(list(items))
        return torch.tensor([[float(len(t)), float(sum(map(ord, t)) % 97), 1.0, 0.0] for t in items])


def test_embeddings_follow_their_rows(examples):
    encoder = FakeEncoder()
    with_vectors = attach_embeddings(examples, encoder)
    assert len(encoder.calls) == 1
    assert len(encoder.calls[0]) == len({ex.profile_text for ex in examples})
    tok = tiny_tokenizer()
    rows = [with_vectors[i] for i in (5, 0, 9, 3)]
    for collator in (SFTCollator(tok), PromptCollator(tok)):
        batch = collator(rows)
        expected = encoder.encode([ex.profile_text for ex in rows])
        assert batch["demographic_embeds"].dtype == torch.float32
        assert torch.equal(batch["demographic_embeds"], expected)
    with pytest.raises(DataError, match="some rows"):
        SFTCollator(tok)([with_vectors[0], examples[1]])


@pytest.mark.parametrize("side", ["left", "right"])
def test_prompt_collator_answer_position_is_the_last_prompt_token(examples, side):
    tok = tiny_tokenizer()
    rows = examples[:5]
    batch = PromptCollator(tok, padding_side=side)(rows)
    for i, ex in enumerate(rows):
        prompt = render_prompt(tok, ex.prompt_messages)
        pos = int(batch["answer_positions"][i])
        assert batch["input_ids"][i, pos] == prompt[-1]
        assert batch["attention_mask"][i].sum() == len(prompt)
        assert batch["option_token_ids"][i] == letter_token_ids(tok, ex.option_letters)
        assert ex.option_letters[int(batch["target_indices"][i])] == ex.target_letter


def test_max_length_is_an_error_not_a_silent_cut(examples):
    with pytest.raises(DataError, match="longer than max_length=8"):
        SFTCollator(tiny_tokenizer(), max_length=8)(examples[:1])
