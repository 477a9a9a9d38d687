"""What the trainer optimises: one loop (`cuma.train.trainer`), several objectives.

An objective turns a micro-batch into a loss *summed* over its normalising units (answer tokens for SFT,
pairs for DPO, completion tokens or answers for GRPO); the trainer divides by the units of the whole
optimizer step on every process, so accumulation gives the exact mean whatever the split, and adds the
router losses. Every forward, reference and rollout included, carries the batch's
``demographic_embeds``, so a profile-routed adapter is routed the same way in all of them.

* `SFT`: next-token cross-entropy over the answer tokens.
* `DPO`: the loss of `cuma.train.dpo_loss` over chosen/rejected pairs run as one concatenated batch; the
  reference is the same model with its adapters disabled (``PreparedModel.reference``), or log-probs
  precomputed once from the starting weights (`precompute_reference`).
* `GRPO`: G sampled answers per prompt (`GRPO.rollout`), rewarded (`cuma.train.rewards`), with group-
  normalised advantages and the clipped loss of `cuma.train.grpo_loss`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm

from cuma.config import DPOConfig, GRPOConfig
from cuma.methods import PreparedModel
from cuma.train.dpo_loss import dpo_loss, sequence_logps, token_logps
from cuma.train.grpo_loss import grpo_loss
from cuma.train.loss import IGNORE_INDEX, answer_token_loss_sum, count_answer_tokens
from cuma.train.rewards import RewardOutput

RewardFn = Callable[[Sequence[str], Sequence[Any]], RewardOutput]
"""(completion texts, their prompts' examples) -> rewards; see `cuma.train.rewards`."""


@dataclass
class StepLoss:
    """One micro-batch's contribution.

    Attributes:
        value: the loss summed over the batch's units (the trainer scales it).
        aux_loss: the router losses of the policy forward (a 0 tensor without routers).
        attention_mask: the mask of the policy forward, for routing statistics.
        sums: logged values summed over units (the trainer reports them per unit).
        counts: logged totals reported as they are (skipped pairs, failed rewards, ...).
    """

    value: torch.Tensor
    aux_loss: torch.Tensor
    attention_mask: torch.Tensor
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    counts: dict[str, torch.Tensor] = field(default_factory=dict)


class Objective:
    """The interface the trainer calls; subclasses document their batch format."""

    name: ClassVar[str]
    unit_name: ClassVar[str]
    """What `units` counts, for messages."""
    generates: ClassVar[bool] = False
    """Whether `rollout` generates with the policy (the trainer then gathers ZeRO-3 weights for it)."""

    def rollout(self, prepared: PreparedModel, batch: dict[str, Any]) -> dict[str, Any]:
        """Anything a batch needs from the current policy before the step (GRPO's sampled answers)."""
        return batch

    def units(self, batch: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, prepared: PreparedModel, batch: dict[str, Any]) -> StepLoss:
        raise NotImplementedError


def _forward(model: torch.nn.Module, batch: dict[str, Any], prefix: str = "") -> Any:
    return model(
        batch[f"{prefix}input_ids"], batch[f"{prefix}attention_mask"], batch.get("demographic_embeds")
    )


class SFT(Objective):
    """Supervised fine-tuning. Batch: ``input_ids``, ``attention_mask``, ``labels`` (-100 outside the
    answer) and, for profile-routed methods, ``demographic_embeds`` (`cuma.data.collate.SFTCollator`)."""

    name = "sft"
    unit_name = "answer tokens (every label is -100)"

    def units(self, batch: dict[str, Any]) -> torch.Tensor:
        return count_answer_tokens(batch["labels"])

    def loss(self, model: torch.nn.Module, prepared: PreparedModel, batch: dict[str, Any]) -> StepLoss:
        out = _forward(model, batch)
        ce = answer_token_loss_sum(out.logits, batch["labels"])
        return StepLoss(ce, out.aux_loss.float(), batch["attention_mask"], {"loss": ce.detach()})


def pair_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """Chosen rows then rejected rows as one right-padded batch, with the profile rows repeated, so the
    policy scores both sides in one forward (the concatenation TRL's DPOTrainer uses)."""
    width = max(batch["chosen_input_ids"].shape[1], batch["rejected_input_ids"].shape[1])

    def side(name: str, key: str, value: int) -> torch.Tensor:
        t = batch[f"{name}_{key}"]
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=value)

    out = {
        key: torch.cat([side("chosen", key, pad), side("rejected", key, pad)])
        for key, pad in (("input_ids", 0), ("attention_mask", 0), ("labels", IGNORE_INDEX))
    }
    if batch.get("demographic_embeds") is not None:
        out["demographic_embeds"] = torch.cat([batch["demographic_embeds"]] * 2)
    return out


class DPO(Objective):
    """Direct preference optimisation. Batch: `cuma.data.collate.PreferenceCollator` (``chosen_*``,
    ``rejected_*``, ``demographic_embeds``), plus ``ref_chosen_logps``/``ref_rejected_logps`` [B] when the
    reference was precomputed."""

    name = "dpo"
    unit_name = "preference pairs"

    def __init__(self, config: DPOConfig) -> None:
        self.config = config

    def units(self, batch: dict[str, Any]) -> torch.Tensor:
        return torch.tensor(batch["chosen_input_ids"].shape[0])

    def loss(self, model: torch.nn.Module, prepared: PreparedModel, batch: dict[str, Any]) -> StepLoss:
        joined = pair_batch(batch)
        # The reference first: its no-grad activations are freed before the policy's are kept for backward.
        if "ref_chosen_logps" in batch:
            ref_chosen, ref_rejected = batch["ref_chosen_logps"], batch["ref_rejected_logps"]
        else:
            ref_chosen, ref_rejected = reference_logps(model, prepared, joined)
        out = _forward(model, joined)
        logps, counts = sequence_logps(out.logits, joined["labels"])
        chosen, rejected = logps.chunk(2)
        chosen_tokens, rejected_tokens = counts.chunk(2)
        result = dpo_loss(
            chosen,
            rejected,
            ref_chosen.to(chosen.device),
            ref_rejected.to(chosen.device),
            self.config,
            chosen_tokens=chosen_tokens,
            rejected_tokens=rejected_tokens,
        )
        sums = {
            "loss": result.losses.detach().sum(),
            "rewards/chosen": result.chosen_rewards.sum(),
            "rewards/rejected": result.rejected_rewards.sum(),
            "rewards/accuracies": result.accuracies.sum(),
            "rewards/margins": result.margins.sum(),
        }
        return StepLoss(result.losses.sum(), out.aux_loss.float(), joined["attention_mask"], sums)


@torch.no_grad()
def reference_logps(
    model: torch.nn.Module, prepared: PreparedModel, joined: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs of a `pair_batch` under the reference (adapters disabled)."""
    with prepared.reference():
        out = _forward(model, joined)
    return sequence_logps(out.logits, joined["labels"])[0].chunk(2)


@torch.no_grad()
def precompute_reference(
    prepared: PreparedModel, dataset: Sequence[Any], collate_fn: Callable, batch_size: int, device: Any
) -> list[dict[str, torch.Tensor]]:
    """``ref_chosen_logps``/``ref_rejected_logps`` of every pair under the starting weights, in dataset
    order, computed once before training (the reference of a run that starts from a trained model)."""
    was_training = prepared.training
    prepared.eval().to(device)
    values: list[dict[str, torch.Tensor]] = []
    try:
        for start in tqdm(range(0, len(dataset), batch_size), desc="reference log-probs", unit="batch"):
            batch = collate_fn([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            joined = {k: v.to(device) for k, v in pair_batch(batch).items()}
            chosen, rejected = sequence_logps(_forward(prepared, joined).logits, joined["labels"])[0].chunk(2)
            values += [
                {"ref_chosen_logps": c, "ref_rejected_logps": r}
                for c, r in zip(chosen.cpu(), rejected.cpu(), strict=True)
            ]
    finally:
        prepared.train(was_training)
    return values


class GRPO(Objective):
    """Group relative policy optimisation on survey prompts. Batch: `cuma.data.collate.RolloutCollator`
    (left-padded prompts, ``demographic_embeds``, ``examples``); `rollout` samples the answers."""

    name = "grpo"
    unit_name = "answer tokens"
    generates = True

    def __init__(self, config: GRPOConfig, tokenizer: Any, reward_fn: RewardFn) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.reward_fn = reward_fn

    def rollout(self, prepared: PreparedModel, batch: dict[str, Any]) -> dict[str, Any]:
        from cuma.train.rollouts import sample_answers

        return sample_answers(prepared, batch, self.config, self.tokenizer, self.reward_fn)

    def units(self, batch: dict[str, Any]) -> torch.Tensor:
        if self.config.loss_type == "dapo":
            return (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
        return torch.tensor(batch["labels"].shape[0])

    def loss(self, model: torch.nn.Module, prepared: PreparedModel, batch: dict[str, Any]) -> StepLoss:
        out = _forward(model, batch)
        logps, mask = token_logps(out.logits, batch["labels"])
        result = grpo_loss(
            logps,
            batch["advantages"],
            mask,
            self.config,
            ref_logps=batch.get("ref_logps"),
            num_tokens=1.0 if self.config.loss_type == "dapo" else None,
        )
        # dapo with num_tokens=1 is the sum over tokens; grpo and dr_grpo are means over answers.
        value = result.loss if self.config.loss_type == "dapo" else result.loss * logps.shape[0]
        units = self.units(batch).float()
        sums = {"loss": value.detach(), "clip_ratio/region_mean": result.clip_region * units}
        if result.kl is not None:
            sums["kl"] = result.kl * units
        return StepLoss(
            value, out.aux_loss.float(), batch["attention_mask"], sums, dict(batch["rollout_counts"])
        )


OBJECTIVES: dict[str, type[Objective]] = {"sft": SFT, "dpo": DPO, "grpo": GRPO}


__all__ = [
    "DPO",
    "GRPO",
    "OBJECTIVES",
    "SFT",
    "Objective",
    "RewardFn",
    "StepLoss",
    "pair_batch",
    "precompute_reference",
    "reference_logps",
]
