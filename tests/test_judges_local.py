"""LocalJudge: verdicts from a causal LM's next-token probabilities of A, B and C."""

import pytest
import torch

from cuma import models
from cuma.judges import JudgeItem, JudgePrompt, LocalJudge, judge_both_orders
from cuma.tiny import tiny_model, tiny_tokenizer

ITEMS = [
    JudgeItem({"country": "Japan", "age": "70"}, "Breakfast?", "Miso soup and rice.", "A cheeseburger."),
    JudgeItem({"country": "Peru"}, "Music?", "Huayno.", "Heavy metal, very loud, all night long."),
    JudgeItem("A teacher from Norway.", "Holiday?", "Skiing.", "A beach."),
]
# The tiny model has 256 positions and a byte-level vocabulary: the default prompt does not fit.
SHORT = JudgePrompt(system="Judge.", user="{profile}\n{prompt}\nA: {response_a}\nB: {response_b}\nA, B or C?")


@pytest.fixture(scope="module")
def judge() -> LocalJudge:
    return LocalJudge(tiny_model(), tiny_tokenizer(), SHORT, batch_size=2)


def probs(verdict) -> list[float]:
    return [verdict.raw["probs"][letter] for letter in "ABC"]


def test_verdicts_are_the_most_probable_letter(judge: LocalJudge) -> None:
    verdicts = judge.judge_many(ITEMS)
    for verdict in verdicts:
        p = probs(verdict)
        assert sum(p) == pytest.approx(1.0, abs=1e-6)
        assert 0 < verdict.raw["mass"] <= 1
        assert verdict.choice == {0: "a", 1: "b", 2: "tie"}[max(range(3), key=p.__getitem__)]
    assert judge.counts.requests >= 3 and judge.counts.failed == 0


def test_a_batch_scores_each_prompt_as_it_scores_alone(judge: LocalJudge) -> None:
    batched = judge.judge_many(ITEMS)
    alone = [judge.judge(*item) for item in ITEMS]
    for together, single in zip(batched, alone, strict=True):
        assert probs(together) == pytest.approx(probs(single), abs=1e-5)


class FullLogits(torch.nn.Module):
    """A causal LM whose forward takes no ``logits_to_keep`` (as many wrappers): logits at every position."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.config = model, model.config

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)


def test_a_model_without_logits_to_keep_gives_the_same_verdicts(judge: LocalJudge) -> None:
    plain = LocalJudge(FullLogits(judge.model), judge.tokenizer, SHORT, batch_size=3)
    for ours, theirs in zip(judge.judge_many(ITEMS), plain.judge_many(ITEMS), strict=True):
        assert probs(ours) == pytest.approx(probs(theirs), abs=1e-5)


def test_the_profile_reaches_the_model(judge: LocalJudge) -> None:
    item = ITEMS[0]
    other = judge.judge(*item._replace(profile={"country": "Brazil", "age": "19"}))
    assert not torch.allclose(torch.tensor(probs(judge.judge(*item))), torch.tensor(probs(other)))


def test_a_prompt_over_max_length_fails_with_the_reason() -> None:
    judge = LocalJudge(tiny_model(), tiny_tokenizer())  # max_length: the model's 256 positions
    verdicts = judge.judge_many(ITEMS[:2])
    assert all(v.failed and "over the judge's max_length 256" in v.reason for v in verdicts)
    assert judge.counts.requests == 0 and judge.counts.failed == 2
    mixed = LocalJudge(tiny_model(), tiny_tokenizer(), SHORT).judge_many(
        [ITEMS[0]._replace(response_a="x" * 400), ITEMS[0]]
    )
    assert mixed[0].failed and not mixed[1].failed  # the rest of the batch is still judged


def test_too_little_mass_on_the_letters_fails() -> None:
    judge = LocalJudge(tiny_model(), tiny_tokenizer(), SHORT, min_mass=0.9)  # a random model spreads its mass
    verdict = judge.judge(*ITEMS[0])
    assert verdict.failed and "under min_mass 0.9" in verdict.reason and verdict.raw["mass"] < 0.9


def test_a_tokenizer_without_a_chat_template_is_refused() -> None:
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="needs a tokenizer with a chat template"):
        LocalJudge(tiny_model(), tokenizer)


@pytest.mark.slow
def test_the_real_small_model_judges_in_the_verdict_format(smollm2_gguf) -> None:
    model, tokenizer = models.load_base_model(models.SMOLLM2)
    judge = LocalJudge(model, tokenizer, batch_size=4)
    verdicts = judge_both_orders(judge, ITEMS[:2])
    assert all(v.choice in ("a", "b", "tie") for v in verdicts)
    for verdict in verdicts:
        for order in ("ab", "ba"):
            assert sum(probs(verdict.raw[order])) == pytest.approx(1.0, abs=1e-6)
            # An instruct model continues "[[" with a verdict letter; a random one would not.
            assert verdict.raw[order].raw["mass"] > 0.5
