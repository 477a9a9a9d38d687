"""GRPO rollouts on survey prompts: G sampled answers per prompt, with the respondent's profile routing
every one of them, their rewards and group-normalised advantages.

`cuma.data.collate.RolloutCollator` batches prompts (left-padded, as generation needs); `sample_answers`
turns such a batch into the policy-loss batch of `cuma.train.objectives.GRPO`: prompt + answer tokens,
labels on the answer tokens only (up to and including the first end-of-sequence token), the advantages,
and the reference log-probs when ``grpo.beta > 0``.
"""

from __future__ import annotations

from typing import Any

import torch

from cuma.config import GRPOConfig
from cuma.methods import PreparedModel
from cuma.train.dpo_loss import token_logps
from cuma.train.grpo_loss import expand_to_generations, group_advantages
from cuma.train.loss import IGNORE_INDEX


@torch.no_grad()
def sample_answers(
    prepared: PreparedModel, batch: dict[str, Any], config: GRPOConfig, tokenizer: Any, reward_fn: Any
) -> dict[str, Any]:
    """Sample ``num_generations`` answers per prompt and build the GRPO loss batch (module docstring)."""
    generations = config.num_generations
    prompt_ids, prompt_mask = batch["input_ids"], batch["attention_mask"]
    embeds = batch.get("demographic_embeds") if prepared.uses_demographics else None
    kwargs = {"demographic_embeds": embeds} if embeds is not None else {}
    was_training = prepared.training
    prepared.eval()
    try:
        sequences = prepared.model.generate(
            input_ids=prompt_ids,
            attention_mask=prompt_mask,
            do_sample=True,
            temperature=config.temperature,
            max_new_tokens=config.max_new_tokens,
            num_return_sequences=generations,
            pad_token_id=tokenizer.pad_token_id,
            **kwargs,
        )
    finally:
        prepared.train(was_training)
    answers = sequences[:, prompt_ids.shape[1] :]
    answer_mask = _until_first_eos(answers, tokenizer.eos_token_id)
    texts = tokenizer.batch_decode(
        answers.masked_fill(answer_mask == 0, tokenizer.pad_token_id), skip_special_tokens=True
    )
    examples = expand_to_generations(batch["examples"], generations)
    rewarded = reward_fn(texts, examples)
    advantages = group_advantages(rewarded.rewards, generations, config.scale_rewards)
    if advantages.failed_share > config.max_failed_share:
        raise RuntimeError(
            f"{advantages.failed} of {advantages.valid.numel()} rewards failed, more than "
            f"grpo.max_failed_share={config.max_failed_share}"
        )
    input_ids = torch.cat([prompt_ids.repeat_interleave(generations, dim=0), answers], dim=1)
    attention_mask = torch.cat([prompt_mask.repeat_interleave(generations, dim=0), answer_mask], dim=1)
    labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)
    labels[:, : prompt_ids.shape[1]] = IGNORE_INDEX
    out: dict[str, Any] = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
        "advantages": advantages.values.to(input_ids.device),
        "rollout_counts": {
            "rollout/reward_sum": rewarded.rewards.nansum(),
            "rollout/answers": torch.tensor(float(len(texts))),
            "rollout/unparsable": torch.tensor(float(rewarded.unparsable)),
            "rollout/failed_rewards": torch.tensor(float(advantages.failed)),
            "rollout/constant_groups": torch.tensor(float(advantages.constant_groups)),
        },
        "respondent_id": [ex.respondent_id for ex in examples],
        "question_id": [ex.question_id for ex in examples],
    }
    if embeds is not None:
        out["demographic_embeds"] = expand_to_generations(embeds, generations)
    if config.beta > 0:
        with prepared.reference():
            logits = prepared(input_ids, attention_mask, out.get("demographic_embeds")).logits
        out["ref_logps"] = token_logps(logits, labels)[0]
    return out


def _until_first_eos(answers: torch.Tensor, eos_token_id: int | None) -> torch.Tensor:
    """1 on each answer's tokens up to and including its first end-of-sequence token, 0 after it."""
    if eos_token_id is None:
        return torch.ones_like(answers)
    is_eos = answers == eos_token_id
    after = (is_eos.cumsum(dim=1) - is_eos.long()) > 0  # strictly after the first eos
    return (~after).long()
