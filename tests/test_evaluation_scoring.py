"""Scoring: left and right padding agree with each other and with a naive one-prompt full-logits pass, for
bare Hugging Face models and for the comparison's `PreparedModel` methods."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cuma.config import ExperimentConfig
from cuma.data.examples import SurveyExample
from cuma.data.profiles import Profile
from cuma.data.render import letter_token_ids, render_prompt
from cuma.evaluation.scoring import answer_logits, score_examples
from cuma.methods import PreparedModel, build_method
from cuma.quick import RandomProfileEncoder
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
    with pytest.raises(
        ValueError, match=r"respondent_id=r0, question_id=natenvir: .* longer than max_length=5"
    ):
        score_examples(model, tokenizer, examples, max_length=5)
    missing = [examples[0], SurveyExample(**{**examples[1].__dict__, "embedding": None})]
    with pytest.raises(ValueError, match=r"respondent_id=r1, question_id=nateduc: no demographic embedding"):
        score_examples(model, tokenizer, missing, use_embeddings=True)


def test_only_the_answer_position_is_projected_and_batches_run_longest_first():
    tokenizer, model = tiny_tokenizer(), tiny_model()
    examples = make_examples()
    widths, projected = [], []
    model.model.register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    model.lm_head.register_forward_pre_hook(lambda module, args: projected.append(tuple(args[0].shape[:2])))
    score_examples(model, tokenizer, examples, batch_size=3, reuse_prefix=False)
    lengths = sorted((len(render_prompt(tokenizer, ex.prompt_messages)) for ex in examples), reverse=True)
    assert widths == [lengths[0], lengths[3], lengths[6]]  # each batch as wide as its longest prompt
    assert projected == [(3, 1), (3, 1), (1, 1)]


def test_answer_logits_of_a_batch_padded_elsewhere_match_the_scored_rows():
    tokenizer, model = tiny_tokenizer(), tiny_model().eval()
    prompts = [render_prompt(tokenizer, ex.prompt_messages) for ex in make_examples(3)]
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        logits, positions = answer_logits(model, ids, mask, "left")
        for row, prompt in enumerate(prompts):
            alone = model(input_ids=torch.tensor([prompt])).logits[0, -1]
            torch.testing.assert_close(logits[row], alone, atol=1e-5, rtol=1e-5)
    assert positions.tolist() == [width - 1] * 3


def randomised(name: str) -> PreparedModel:
    """Method ``name`` on a tiny model, its trainable weights random so that the method matters."""
    torch.manual_seed(0)
    prepared = build_method(name, tiny_model(), ExperimentConfig(), encoder=RandomProfileEncoder(4))
    with torch.no_grad():
        for weight in prepared.trainable_parameters().values():
            weight.normal_(std=0.5)
    return prepared


def prepared_probs(prepared: PreparedModel, tokenizer, examples) -> list[np.ndarray]:
    """The naive pass through the method's own call (one prompt, every position's logits)."""
    result = []
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([render_prompt(tokenizer, ex.prompt_messages)])
            embeds = ex.embedding[None] if prepared.uses_demographics else None
            logits = prepared(ids, torch.ones_like(ids), demographic_embeds=embeds).logits[0, -1]
            letters = letter_token_ids(tokenizer, ex.option_letters)
            result.append(torch.softmax(logits[letters], dim=-1).numpy())
    return result


@pytest.mark.parametrize("name", ["persona", "lora", "cuma", "full"])
def test_prepared_methods_are_scored_through_their_call(name):
    tokenizer, prepared = tiny_tokenizer(), randomised(name)
    examples = make_examples()
    expected = prepared_probs(prepared, tokenizer, examples)
    if name != "persona":  # the method's weights change the answer
        plain = naive_probs(tiny_model(), tokenizer, examples)
        assert not np.allclose(expected[0], plain[0], atol=1e-3)
    for side in ("left", "right"):
        frame = score_examples(
            prepared,
            tokenizer,
            examples,
            use_embeddings=prepared.uses_demographics,
            batch_size=3,
            padding_side=side,
        )
        for got, want in zip(frame["probs"], expected, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5)


def test_prefix_tuning_scores_the_same_with_left_padding():
    tokenizer, prepared = tiny_tokenizer(), randomised("prefix")
    examples = make_examples()
    expected = prepared_probs(prepared, tokenizer, examples)
    frame = score_examples(prepared, tokenizer, examples, batch_size=3, padding_side="left")
    for got, want in zip(frame["probs"], expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
