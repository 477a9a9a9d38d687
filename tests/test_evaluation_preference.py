"""Preference evaluation on the Community Alignment fixture: CA-Acc (permuted options, letter
probabilities, the prediction mapped back, the profile reaching routed methods) and the win-rate of
generated responses judged in both orders, with failures counted apart from ties."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from cuma.config import ExperimentConfig
from cuma.data.community_alignment import load_community_alignment
from cuma.data.embeddings import attach_embeddings
from cuma.data.errors import DataError
from cuma.data.render import letter_token_ids
from cuma.errors import ConfigError
from cuma.evaluation.choice import choice_permutation, evaluate_choice_accuracy, permute_choice
from cuma.evaluation.preference import (
    PreferenceEvalConfig,
    evaluate_win_rate,
    generate_pairs,
    generate_responses,
    judge_pairs,
)
from cuma.judges import CallableJudge, JudgeFailureError
from cuma.methods import PreparedModel, build_method
from cuma.quick import RandomProfileEncoder
from cuma.tiny import tiny_model, tiny_tokenizer

FIXTURES = Path(__file__).parent / "fixtures"
CONFIG = PreferenceEvalConfig(batch_size=4, bootstrap_resamples=200)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def ca():
    return load_community_alignment(FIXTURES / "community_alignment")


class FavourLetter(nn.Module):
    """A stand-in method whose logits at every position favour one token; it records its calls."""

    uses_demographics = False
    persona_in_prompt = True
    name = "favour"

    def __init__(self, token_id: int, vocab_size: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        with torch.no_grad():
            self.bias[token_id] = 3.0
        self.calls: list[dict] = []

    def forward(
        self, input_ids, attention_mask, demographic_embeds=None, position_ids=None, logits_to_keep=0
    ):
        self.calls.append({"mask": attention_mask, "position_ids": position_ids, "keep": logits_to_keep})
        return SimpleNamespace(logits=self.bias.expand(input_ids.shape[0], 1, -1))


class Generator:
    """``generate`` of a stand-in method: each row's answer is ``length(prompt text, embedding)`` copies of
    the letter A, then the end-of-turn token, padded; it records every call's keywords."""

    def __init__(self, tokenizer, length) -> None:
        self.tokenizer, self.length, self.calls = tokenizer, length, []
        (self.letter,) = letter_token_ids(tokenizer, ["A"])

    def generate(self, input_ids, attention_mask, **kwargs):
        self.calls.append(kwargs)
        embeds = kwargs.get("demographic_embeds")
        answers = []
        for row, (ids, mask) in enumerate(zip(input_ids, attention_mask, strict=True)):
            text = self.tokenizer.decode(ids[mask.bool()])
            n = self.length(text, None if embeds is None else embeds[row])
            answers.append([self.letter] * n + [self.tokenizer.eos_token_id])
        width = max(map(len, answers)) + 1
        pad = self.tokenizer.pad_token_id
        new = torch.tensor([a + [pad] * (width - len(a)) for a in answers])
        return torch.cat([input_ids, new], dim=1)


class Responder(nn.Module):
    """A stand-in `PreparedModel` for generation around a `Generator`."""

    def __init__(self, name, generator, uses_demographics=False) -> None:
        super().__init__()
        self.name, self.model, self.uses_demographics = name, generator, uses_demographics


def last_turn(text: str) -> int:
    """T of the last ``prompt T of <conversation>`` in a rendered fixture prompt."""
    return int(re.findall(r"prompt (\d+) of ca\d+", text)[-1])


def randomised(name: str) -> PreparedModel:
    """Method ``name`` on a tiny model, its trainable weights random so that the method matters."""
    torch.manual_seed(0)
    prepared = build_method(name, tiny_model(), ExperimentConfig(), encoder=RandomProfileEncoder(32))
    with torch.no_grad():
        for weight in prepared.trainable_parameters().values():
            weight.normal_(std=0.5)
    return prepared


# ---------------------------------------------------------------------------------------------- CA-Acc
def test_ca_acc_maps_the_prediction_back_through_the_recorded_permutation(tok, ca):
    (b,) = letter_token_ids(tok, ["B"])
    stub = FavourLetter(b, len(tok))
    result = evaluate_choice_accuracy(stub, tok, ca.choice, CONFIG)
    table = result.table
    assert list(table["question_id"]) == [ex.question_id for ex in ca.choice]
    for row, ex in zip(table.itertuples(), ca.choice, strict=True):
        assert sorted(row.permutation) == [0, 1, 2, 3]
        assert sum(row.probs) == pytest.approx(1.0)
        assert row.predicted_letter == "B" and row.predicted == row.permutation[1]
        assert row.target == ex.option_letters.index(ex.target_letter)
        assert row.target_letter == row.option_letters[row.permutation.index(row.target)]
        assert row.correct == (row.predicted == row.target)
        assert row.gender == ex.profile["gender"]
    assert any(perm != [0, 1, 2, 3] for perm in table["permutation"])
    acc = result.accuracy
    assert acc.n == len(ca.choice) and acc.accuracy == pytest.approx(table["correct"].mean())
    assert acc.chance == pytest.approx(0.25)
    assert acc.ci is not None and acc.ci[0] <= acc.accuracy <= acc.ci[1]
    for call in stub.calls:  # the last position only, and positions counted over the real tokens
        assert call["keep"] == 1
        torch.testing.assert_close(call["position_ids"], (call["mask"].cumsum(1) - 1).clamp(min=0))
    assert any((call["mask"] == 0).any() for call in stub.calls)  # some batch was really padded


def test_permuted_prompt_shows_the_options_in_the_permuted_order(ca):
    ex = next(e for e in ca.choice if e.question_id == "ca1")
    chosen = ex.option_labels[ex.option_letters.index(ex.target_letter)]
    shown = permute_choice(ex, (2, 0, 3, 1), persona=True)
    user = shown.prompt_messages[-1]["content"]
    lines = [f"{letter}. {ex.option_labels[i]}" for letter, i in zip("ABCD", (2, 0, 3, 1), strict=True)]
    assert "\n".join(lines) in user and user.startswith(ex.prompt_messages[-1]["content"].split("\nA. ")[0])
    assert shown.option_labels[shown.option_letters.index(shown.target_letter)] == chosen
    assert ex.profile_text in shown.prompt_messages[0]["content"]
    vanilla = permute_choice(ex, (2, 0, 3, 1), persona=False)
    assert ex.profile_text not in vanilla.prompt_messages[0]["content"]
    with pytest.raises(ValueError, match=r"question_id=ca1: \[0, 0, 1, 2\] is not a permutation"):
        permute_choice(ex, (0, 0, 1, 2), persona=True)


def test_permutations_depend_on_the_seed_and_the_example_only(tok, ca):
    prepared = randomised("lora")
    sets = ca.choice[:6]
    one = evaluate_choice_accuracy(prepared, tok, sets, dataclasses.replace(CONFIG, batch_size=1))
    many = evaluate_choice_accuracy(prepared, tok, sets[::-1], dataclasses.replace(CONFIG, batch_size=6))
    by_id = many.table.set_index("question_id")
    for row in one.table.itertuples():
        assert by_id.loc[row.question_id, "permutation"] == row.permutation
        np.testing.assert_allclose(by_id.loc[row.question_id, "probs"], row.probs, atol=1e-5)
    other = [choice_permutation(ex, seed=1) for ex in sets]
    assert other != list(map(tuple, one.table["permutation"]))


def test_ca_probabilities_of_a_routed_method_follow_the_profile_vector(tok, ca):
    encoder = RandomProfileEncoder(32)
    sets = attach_embeddings(ca.choice[:4], encoder)
    flipped = [dataclasses.replace(ex, embedding=-ex.embedding) for ex in sets]
    routed, dense = randomised("cuma"), randomised("lora")
    assert routed.uses_demographics and not dense.uses_demographics
    for prepared, moves in ((routed, True), (dense, False)):
        probs = np.stack(evaluate_choice_accuracy(prepared, tok, sets, CONFIG).table["probs"])
        again = np.stack(evaluate_choice_accuracy(prepared, tok, flipped, CONFIG).table["probs"])
        assert np.allclose(probs, again, atol=1e-6) != moves
    with pytest.raises(DataError, match=r"question_id=ca1: no demographic embedding"):
        evaluate_choice_accuracy(routed, tok, ca.choice[:2], CONFIG)


# -------------------------------------------------------------------------------------------- win-rate
def longer(profile, prompt, a, b):
    """Prefers the longer response; fails on conversation ca2."""
    if re.search(r"of ca2\b", prompt):
        raise RuntimeError("no verdict for ca2")
    return "a" if len(a) > len(b) else "b" if len(b) > len(a) else "tie"


def test_win_rate_counts_wins_losses_ties_and_failures(tok, ca):
    method = Responder("method", Generator(tok, lambda text, _: last_turn(text) + 1))
    base = Responder("base", Generator(tok, lambda text, _: 2))
    judge = CallableJudge(longer)
    result = evaluate_win_rate(method, base, tok, ca.sft, judge, CONFIG)

    def expected(ex):
        if ex.conversation_id == "ca2":
            return "failed"
        return {0: "loss", 1: "tie"}.get(ex.turn, "win")

    outcomes = [expected(ex) for ex in ca.sft]
    assert list(result.table["verdict"]) == outcomes
    wr = result.win_rate
    w, lo, t = (outcomes.count(x) for x in ("win", "loss", "tie"))
    assert (wr.wins, wr.losses, wr.ties, result.failed) == (w, lo, t, outcomes.count("failed")) and t > 0
    assert wr.win_rate == pytest.approx(w / (w + lo + t))
    assert wr.tie_adjusted == pytest.approx((w + t / 2) / (w + lo + t))
    assert wr.win_rate_ci[0] <= wr.win_rate <= wr.win_rate_ci[1] and wr.tie_adjusted_ci is not None
    assert judge.counts.requests == 2 * len(ca.sft)  # both orders
    failed = result.table[result.table["verdict"] == "failed"]
    assert failed["reason"].str.contains("no verdict for ca2").all()
    assert list(result.table["response"]) == ["A" * (ex.turn + 1) for ex in ca.sft]
    assert set(result.table["baseline_response"]) == {"AA"}
    gender = result.groups[result.groups["field"] == "gender"]
    assert gender[["wins", "losses", "ties", "failed"]].to_numpy().sum() == sum(
        ex.profile["gender"] is not None for ex in ca.sft
    )


def test_saved_responses_are_judged_again_without_generating(tok, ca):
    method = Responder("method", Generator(tok, lambda text, _: 3))
    base = Responder("base", Generator(tok, lambda text, _: 1))
    table = generate_pairs(method, base, tok, ca.sft, CONFIG)
    assert {"conversation_id", "annotator_id", "turn", "prompt", "profile"} <= set(table.columns)
    calls = len(method.model.calls)
    first = CallableJudge(lambda *_: "a")  # a judge that always picks the first position
    both = judge_pairs(first, table, CONFIG)
    assert both.win_rate.ties == len(table) and both.win_rate.wins == 0  # the orders disagree: ties
    single = judge_pairs(first, table, dataclasses.replace(CONFIG, judge_both_orders=False))
    assert single.win_rate.wins == len(table)
    assert len(method.model.calls) == calls
    with pytest.raises(JudgeFailureError, match=r"all \d+ judge verdicts failed"):
        judge_pairs(CallableJudge(lambda *_: "maybe"), table, CONFIG)


def test_a_routed_method_generates_with_each_rows_vector(tok, ca):
    prompts = [
        dataclasses.replace(ex, embedding=torch.full((4,), float(i))) for i, ex in enumerate(ca.sft[:6])
    ]
    generator = Generator(tok, lambda text, embedding: int(embedding[0]) + 1)
    routed = Responder("routed", generator, uses_demographics=True)
    responses = generate_responses(routed, tok, prompts, dataclasses.replace(CONFIG, max_new_tokens=7))
    assert responses == ["A" * (i + 1) for i in range(6)]  # batched longest first, mapped back
    assert all(call["max_new_tokens"] == 7 and call["do_sample"] is False for call in generator.calls)
    assert all("temperature" not in call for call in generator.calls)  # greedy: no sampling settings
    sampled = dataclasses.replace(CONFIG, do_sample=True, temperature=0.7)
    generate_responses(routed, tok, prompts[:1], sampled)
    assert generator.calls[-1]["do_sample"] is True and generator.calls[-1]["temperature"] == 0.7
    with pytest.raises(DataError, match=r"conversation_id=ca1, turn=0: no demographic embedding"):
        generate_responses(routed, tok, ca.sft[:2], CONFIG)


def test_generation_of_a_routed_tiny_model_follows_the_profile_and_not_the_batching(tok, ca):
    prepared = randomised("cuma")
    prompts = attach_embeddings(ca.sft[:3], RandomProfileEncoder(32))
    config = dataclasses.replace(CONFIG, max_new_tokens=4)
    alone = generate_responses(prepared, tok, prompts, dataclasses.replace(config, batch_size=1))
    assert generate_responses(prepared, tok, prompts, config) == alone
    flipped = [dataclasses.replace(ex, embedding=-ex.embedding) for ex in prompts]
    assert generate_responses(prepared, tok, flipped, config) != alone


# ---------------------------------------------------------------------------------------------- errors
def test_an_over_long_prompt_is_an_error_naming_the_example(tok, ca):
    method = Responder("method", Generator(tok, lambda text, _: 1))
    short = dataclasses.replace(CONFIG, max_length=5)
    with pytest.raises(DataError, match=r"conversation_id=ca1, turn=0: .*longer than max_length=5"):
        evaluate_win_rate(method, method, tok, ca.sft, CallableJudge(longer), short)
    assert method.model.calls == []  # nothing generated before the check
    with pytest.raises(DataError, match=r"respondent_id=a0, question_id=ca1: .*longer than max_length=5"):
        evaluate_choice_accuracy(FavourLetter(0, len(tok)), tok, ca.choice, short)


def test_group_fields_missing_from_the_profiles_fail_before_generating(tok, ca):
    method = Responder("method", Generator(tok, lambda text, _: 1))
    config = dataclasses.replace(CONFIG, group_fields=["gender", "religion"])
    with pytest.raises(ConfigError, match=r"group_fields=.*prompt 0 has no profile field 'religion'"):
        evaluate_win_rate(method, method, tok, ca.sft, CallableJudge(longer), config)
    assert method.model.calls == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": 0}, r"preference\.batch_size=0: must be at least 1"),
        ({"confidence": 1.0}, r"preference\.confidence=1\.0: must be in \(0, 1\)"),
        ({"group_fields": []}, r"preference\.group_fields=\[\]: must be non-empty"),
        ({"max_new_tokens": 2.5}, r"preference\.max_new_tokens=2\.5: expected int"),
    ],
)
def test_config_refuses_bad_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        PreferenceEvalConfig(**overrides)
