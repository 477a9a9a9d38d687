"""Scoring on reused prompt prefixes gives the probabilities of plain scoring (fp32, 1e-5) and falls back,
saying why, where a prefix cannot be reused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cuma.config import ExperimentConfig
from cuma.data.collate import PromptCollator
from cuma.data.examples import SurveyExample
from cuma.data.profiles import Profile
from cuma.data.render import render_prompt
from cuma.evaluation.scoring import (
    MIN_SHARED_PREFIX,
    SCORING_ATTR,
    plan_prefix_groups,
    score_examples,
)
from cuma.evaluation.topology import RoutingCollector
from cuma.methods import PreparedModel, build_method
from cuma.quick import RandomProfileEncoder
from cuma.tiny import tiny_model, tiny_tokenizer

QUESTIONS = [
    ("natenvir", "Are we spending too much, too little, or about the right amount on the environment?", 3),
    ("nateduc", "Education?", 3),
    ("natsci", "Are we spending too much or too little on science? Answer honestly please.", 5),
    ("natroad", "Highways and bridges?", 4),
]


def survey(respondents: int = 5, persona: bool = True) -> list[SurveyExample]:
    """Each respondent answers 1-4 questions; the profile (of varying length) leads the system prompt."""
    examples = []
    for r in range(respondents):
        profile = Profile(sex="female" if r % 2 else "male", age=str(20 + 9 * r), region="north " * (r % 3))
        described = ", ".join(f"{f}: {v}" for f, v in profile.items())
        system = f"You are a person, {described}." if persona else "You answer survey questions."
        for qid, text, k in QUESTIONS[: 1 + r % 4]:
            letters = tuple("ABCDE"[:k])
            codes = tuple(range(1, k + 1))
            user = text + "\n" + "\n".join(f"{x}. option {x}" for x in letters)
            examples.append(
                SurveyExample(
                    respondent_id=f"r{r}",
                    question_id=qid,
                    profile=profile,
                    profile_text=described,
                    prompt_messages=(
                        {"role": "system", "content": system},
                        {"role": "user", "content": user},
                    ),
                    option_letters=letters,
                    option_codes=codes,
                    option_labels=tuple(f"option {x}" for x in letters),
                    target_letter=letters[r % k],
                    target_code=codes[r % k],
                    scale_min=1,
                    scale_max=k,
                    ordinal=True,
                    embedding=torch.linspace(-1, 1, 4) * (r + 1),
                )
            )
    return examples


def randomised(name: str, family: str = "llama") -> PreparedModel:
    """Method ``name`` on a tiny model, its trainable weights random so that the method matters."""
    torch.manual_seed(0)
    prepared = build_method(name, tiny_model(family), ExperimentConfig(), encoder=RandomProfileEncoder(4))
    with torch.no_grad():
        for weight in prepared.trainable_parameters().values():
            weight.normal_(std=0.5)
    return prepared


def both(model, examples, **kwargs):
    """Scored on reused prefixes and plainly, with the same settings."""
    return (
        score_examples(model, tiny_tokenizer(), examples, reuse_prefix=True, **kwargs),
        score_examples(model, tiny_tokenizer(), examples, reuse_prefix=False, **kwargs),
    )


def assert_same_probs(reused, plain):
    for got, want in zip(reused["probs"], plain["probs"], strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("name", ["base", "persona", "lora", "cuma"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_reused_prefixes_give_the_probabilities_of_plain_scoring(name, side):
    prepared = randomised(name)
    examples = survey(persona=name != "base")
    reused, plain = both(
        prepared, examples, use_embeddings=prepared.uses_demographics, batch_size=3, padding_side=side
    )
    record = reused.attrs[SCORING_ATTR]
    assert record["prefix_cache"] and record["cached_prompts"] >= 6
    assert record["computed_tokens"] < record["prompt_tokens"]
    assert not plain.attrs[SCORING_ATTR]["prefix_cache"]
    assert list(reused["respondent_id"]) == [ex.respondent_id for ex in examples]
    assert_same_probs(reused, plain)


def test_a_bare_qwen3_model_scores_the_same_on_reused_prefixes():
    reused, plain = both(tiny_model("qwen3"), survey(), batch_size=4)
    assert reused.attrs[SCORING_ATTR]["prefix_cache"]
    assert_same_probs(reused, plain)


def test_cuma_routing_at_the_answer_position_is_recorded_the_same():
    prepared = randomised("cuma")
    examples = survey()
    collectors = {True: RoutingCollector("answer"), False: RoutingCollector("answer")}
    for reuse, collector in collectors.items():
        frame = score_examples(
            prepared,
            tiny_tokenizer(),
            examples,
            use_embeddings=True,
            batch_size=3,
            routing=collector,
            reuse_prefix=reuse,
        )
        assert frame.attrs[SCORING_ATTR]["prefix_cache"] is reuse
    reused, plain = collectors[True].vectors(), collectors[False].vectors()
    assert reused.keys() == plain.keys() and reused
    for layer in reused:
        np.testing.assert_allclose(reused[layer], plain[layer], atol=1e-5)


def test_routing_over_the_whole_prompt_falls_back_to_plain_scoring():
    frame = score_examples(
        randomised("cuma"),
        tiny_tokenizer(),
        survey(),
        use_embeddings=True,
        routing=RoutingCollector("prompt"),
    )
    record = frame.attrs[SCORING_ATTR]
    assert not record["prefix_cache"] and "tokens='prompt'" in record["prefix_reason"]


def test_prefix_tuning_falls_back_to_plain_scoring():
    frame = score_examples(randomised("prefix"), tiny_tokenizer(), survey(), batch_size=3)
    record = frame.attrs[SCORING_ATTR]
    assert not record["prefix_cache"] and "prefix tuning" in record["prefix_reason"]
    assert record["computed_tokens"] == record["prompt_tokens"]


class NoCache(nn.Module):
    """A causal LM that ignores the cache it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.model = tiny_model()

    def forward(self, cache=None, use_cache=None, **kwargs):
        return self.model(**kwargs, use_cache=False)


def test_a_model_that_leaves_the_cache_empty_is_scored_plainly():
    reused, plain = both(NoCache(), survey(), batch_size=3)
    record = reused.attrs[SCORING_ATTR]
    assert not record["prefix_cache"] and "did not fill the key/value cache" in record["prefix_reason"]
    assert_same_probs(reused, plain)


def test_each_respondent_shares_a_prefix_and_vectors_keep_respondents_apart():
    tokenizer = tiny_tokenizer()
    examples = survey()
    rows = [PromptCollator(tokenizer).encode(ex) for ex in examples]
    groups = plan_prefix_groups(rows, use_embeddings=True)
    for group in groups:
        assert len({examples[i].respondent_id for i in group.rows}) == 1 and len(group.rows) >= 2
        assert group.length >= MIN_SHARED_PREFIX
        ids = [rows[i].input_ids for i in group.rows]
        assert all(row[: group.length] == ids[0][: group.length] for row in ids)
        assert group.length < min(map(len, ids))
    grouped = sorted(i for group in groups for i in group.rows)
    singles = [
        i for i, ex in enumerate(examples) if sum(e.respondent_id == ex.respondent_id for e in examples) == 1
    ]
    assert grouped == sorted(set(range(len(examples))) - set(singles))


def test_without_a_persona_every_prompt_shares_the_system_prompt():
    tokenizer = tiny_tokenizer()
    examples = survey(persona=False)
    rows = [PromptCollator(tokenizer).encode(ex) for ex in examples]
    (group,) = plan_prefix_groups(rows, use_embeddings=False)
    assert group.rows == tuple(range(len(examples)))
    system = render_prompt(tokenizer, examples[0].prompt_messages[:1])
    assert group.length >= len(system) - 2  # the system turn, give or take the template's joins
