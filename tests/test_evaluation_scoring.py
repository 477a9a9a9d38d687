"""Scoring: left and right padding agree with each other and with a naive one-prompt full-logits pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cuma.data.examples import SurveyExample
from cuma.data.profiles import Profile
from cuma.data.render import letter_token_ids, render_prompt
from cuma.evaluation.scoring import score_examples
from cuma.tiny import tiny_model, tiny_tokenizer

QUESTIONS = [
    ("natenvir", "Are we spending too much, too little, or about the right amount on the environment?", 3),
    ("nateduc", "Education?", 3),
    ("natsci", "Are we spending too much or too little on science? Answer honestly please.", 5),
]


def make_examples(n: int = 7) -> list[SurveyExample]:
    examples = []
    for i in range(n):
        qid, text, k = QUESTIONS[i % len(QUESTIONS)]
        letters = tuple("ABCDE"[:k])
        codes = tuple(range(1, k + 1))
        profile = Profile(sex="female" if i % 2 else "male", age=str(20 + 7 * i) if i % 3 else None)
        persona = "You are a person, " + ", ".join(f"{f}: {v}" for f, v in profile.items() if v) * (i % 3)
        user = text + "\n" + "\n".join(f"{x}. option {x}" for x in letters)
        examples.append(
            SurveyExample(
                respondent_id=f"r{i}",
                question_id=qid,
                profile=profile,
                profile_text=persona,
                prompt_messages=({"role": "system", "content": persona}, {"role": "user", "content": user}),
                option_letters=letters,
                option_codes=codes,
                option_labels=tuple(f"option {x}" for x in letters),
                target_letter=letters[i % k],
                target_code=codes[i % k],
                scale_min=1,
                scale_max=k,
                ordinal=True,
                embedding=torch.linspace(-1, 1, 4) * (i + 1),
            )
        )
    return examples


class EmbeddingShift(nn.Module):
    """A stand-in routed model: adds a per-row function of ``demographic_embeds`` to every logit."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.mix = nn.Linear(4, model.config.vocab_size)

    def forward(self, input_ids, attention_mask=None, demographic_embeds=None, **kwargs):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        out.logits = out.logits + self.mix(demographic_embeds)[:, None, :]
        return out


def naive_probs(model, tokenizer, examples, use_embeddings=False) -> list[np.ndarray]:
    """One prompt at a time, no padding, logits for every position, the last one read."""
    result = []
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([render_prompt(tokenizer, ex.prompt_messages)])
            kwargs = {"demographic_embeds": ex.embedding[None]} if use_embeddings else {}
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs).logits[0, -1]
            letters = letter_token_ids(tokenizer, ex.option_letters)
            result.append(torch.softmax(logits[letters], dim=-1).numpy())
    return result


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_left_and_right_padding_match_naive_scoring(family):
    tokenizer, model = tiny_tokenizer(), tiny_model(family)
    examples = make_examples()
    lengths = {len(render_prompt(tokenizer, ex.prompt_messages)) for ex in examples}
    assert len(lengths) > 3  # batches really mix lengths, so padding matters
    expected = naive_probs(model, tokenizer, examples)
    for side in ("left", "right"):
        frame = score_examples(model, tokenizer, examples, batch_size=3, padding_side=side)
        for got, want in zip(frame["probs"], expected, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5)


def test_predictions_follow_the_schema():
    tokenizer, model = tiny_tokenizer(), tiny_model()
    examples = make_examples()
    frame = score_examples(model, tokenizer, examples, batch_size=4)
    assert list(frame["respondent_id"]) == [ex.respondent_id for ex in examples]
    assert list(frame["target_code"]) == [ex.target_code for ex in examples]
    for row in frame.itertuples():
        assert len(row.probs) == len(row.option_codes)
        assert sum(row.probs) == pytest.approx(1.0)
        best = int(np.argmax(row.probs))
        assert row.predicted_code == row.option_codes[best]
        assert row.predicted_letter == row.option_letters[best]
    assert {"sex", "age"} <= set(frame.columns)
    assert frame["age"].isna().any()  # missing profile values stay missing


def test_demographic_embeds_reach_the_right_rows():
    tokenizer = tiny_tokenizer()
    model = EmbeddingShift(tiny_model()).eval()
    with torch.no_grad():
        model.mix.weight.normal_(std=3.0)
    examples = make_examples()
    expected = naive_probs(model, tokenizer, examples, use_embeddings=True)
    unshifted = naive_probs(model.model, tokenizer, examples)
    assert not np.allclose(expected[0], unshifted[0], atol=1e-3)  # the embedding matters
    frame = score_examples(model, tokenizer, examples, use_embeddings=True, batch_size=3, padding_side="left")
    for got, want in zip(frame["probs"], expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_bf16_autocast_gives_valid_probabilities():
    tokenizer, model = tiny_tokenizer(), tiny_model()
    frame = score_examples(model, tokenizer, make_examples(), precision="bf16")
    expected = naive_probs(model, tokenizer, make_examples())
    for got, want in zip(frame["probs"], expected, strict=True):
        np.testing.assert_allclose(got, want, atol=0.05)


def test_bad_input_is_a_clear_error():
    tokenizer, model = tiny_tokenizer(), tiny_model()
    examples = make_examples(3)
    with pytest.raises(ValueError, match=r"over data\.max_length=5"):
        score_examples(model, tokenizer, examples, max_length=5)
    missing = [examples[0], SurveyExample(**{**examples[1].__dict__, "embedding": None})]
    with pytest.raises(ValueError, match=r"respondent 'r1'.*no demographic embedding"):
        score_examples(model, tokenizer, missing, use_embeddings=True)
