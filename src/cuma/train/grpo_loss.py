"""GRPO: group-normalised advantages and the clipped-ratio policy loss of TRL's `GRPOTrainer` (trl 1.16.0).

Each prompt gets G completions; completion k of prompt i is row ``i * G + k`` (`expand_to_generations`
lays out per-prompt tensors, such as demographic embeddings, that way). `group_advantages` turns their
rewards into ``(r - mean_group) / (std_group + eps)``; a NaN reward (a failed judge) is left out of the
group statistics, gets advantage 0 and is counted, and a group whose valid rewards are all equal gets
advantage 0, not NaN. `grpo_loss` takes per-token log-probs of the completions
(`cuma.train.dpo_loss.token_logps`) and aggregates the clipped loss, plus an optional k3 KL
``exp(ref - logp) - (ref - logp) - 1`` to the reference weighted by ``beta``, over tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import torch

from cuma.config import GRPOConfig, ScaleRewards


@dataclass(frozen=True)
class Advantages:
    """Advantages of N prompts x G completions and what was left out.

    Attributes:
        values: float32 [N * G]; 0 for failed rewards and for groups without spread.
        valid: bool [N * G], False where the reward was NaN.
        failed: completions whose reward was NaN.
        constant_groups: groups with valid rewards that are all equal (no learning signal).
        empty_groups: groups in which every reward failed.
    """

    values: torch.Tensor
    valid: torch.Tensor
    failed: int
    constant_groups: int
    empty_groups: int

    @property
    def failed_share(self) -> float:
        """Share of completions whose reward failed, for a stop-on-too-many-failures check."""
        return self.failed / self.valid.numel()


def _nanstd(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per row of [R, K]: Bessel-corrected std of the valid entries, NaN with fewer than two (as TRL)."""
    n = valid.sum(1)
    kept = values.masked_fill(~valid, 0.0)
    mean = kept.sum(1, keepdim=True) / n.clamp(min=1).unsqueeze(1)
    squares = ((kept - mean).masked_fill(~valid, 0.0) ** 2).sum(1)
    return torch.where(n > 1, (squares / (n - 1).clamp(min=1)).sqrt(), torch.nan)


def group_advantages(
    rewards: torch.Tensor, num_generations: int, scale_rewards: str = "group", eps: float = 1e-4
) -> Advantages:
    """Group-normalised advantages of flat rewards [N * G] (see the module docstring).

    Args:
        scale_rewards: ``group`` divides by the group's std, ``batch`` by the std of every valid
            reward of the batch (the mean stays the group's), ``none`` only centres; as TRL's option.
        eps: added to the std, as TRL's 1e-4.
    """
    if scale_rewards not in get_args(ScaleRewards):
        raise ValueError(f"scale_rewards must be one of {get_args(ScaleRewards)}, got {scale_rewards!r}")
    if num_generations < 1 or rewards.ndim != 1 or rewards.numel() % num_generations:
        raise ValueError(
            f"rewards must be flat [N * G] with G={num_generations} >= 1 completions per prompt, "
            f"got shape {tuple(rewards.shape)}"
        )
    if torch.isinf(rewards).any():
        raise ValueError(f"rewards must be finite or NaN (failed), got {rewards.tolist()}")
    grouped = rewards.float().view(-1, num_generations)
    valid = ~torch.isnan(grouped)
    n_valid = valid.sum(1)
    mean = grouped.masked_fill(~valid, 0.0).sum(1) / n_valid.clamp(min=1)
    centred = grouped - mean.unsqueeze(1)
    if scale_rewards == "group":
        centred = centred / (_nanstd(grouped, valid).unsqueeze(1) + eps)
    elif scale_rewards == "batch":
        centred = centred / (_nanstd(grouped.view(1, -1), valid.view(1, -1)) + eps)
    high = grouped.masked_fill(~valid, -torch.inf).amax(1)
    low = grouped.masked_fill(~valid, torch.inf).amin(1)
    constant = (n_valid > 0) & (high == low)
    keep = valid & ~constant.unsqueeze(1)
    values = torch.where(keep, centred, 0.0).view(-1)
    return Advantages(
        values=values,
        valid=valid.view(-1),
        failed=int((~valid).sum()),
        constant_groups=int(constant.sum()),
        empty_groups=int((n_valid == 0).sum()),
    )


@dataclass(frozen=True)
class GRPOOutput:
    """The aggregated loss and token-level statistics for logging (TRL's names in `metrics`).

    Attributes:
        loss: scalar, differentiable.
        kl: mean k3 KL over completion tokens (detached), None without reference log-probs.
        clip_low, clip_high, clip_region: share of completion tokens whose ratio was clipped below
            (negative advantage), above (positive advantage), or either.
    """

    loss: torch.Tensor
    kl: torch.Tensor | None
    clip_low: torch.Tensor
    clip_high: torch.Tensor
    clip_region: torch.Tensor

    def metrics(self) -> dict[str, float]:
        out = {
            "loss": self.loss.item(),
            "clip_ratio/low_mean": self.clip_low.item(),
            "clip_ratio/high_mean": self.clip_high.item(),
            "clip_ratio/region_mean": self.clip_region.item(),
        }
        return out if self.kl is None else {**out, "kl": self.kl.item()}


def grpo_loss(
    logps: torch.Tensor,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    config: GRPOConfig | None = None,
    *,
    old_logps: torch.Tensor | None = None,
    ref_logps: torch.Tensor | None = None,
    num_tokens: torch.Tensor | float | None = None,
) -> GRPOOutput:
    """Clipped-ratio loss of B completions from per-token log-probs [B, T].

    Args:
        advantages: [B] (`Advantages.values`). A failed reward's advantage is 0, so only the KL term
            moves it; multiply ``completion_mask`` by `Advantages.valid` to drop it entirely.
        completion_mask: [B, T], 1 on completion tokens.
        old_logps: log-probs of the policy that generated the completions; None means on-policy
            (``logps.detach()``, ratio 1, as TRL with one iteration per generation).
        ref_logps: reference log-probs [B, T]; required when ``config.beta > 0``.
        num_tokens: ``dapo`` normaliser: the completion tokens of the whole accumulated optimizer step,
            for an exact mean under accumulation; None = this batch's. ``grpo`` and ``dr_grpo`` are
            means per batch; divide them by the accumulation steps.
    """
    config = config or GRPOConfig()
    if logps.ndim != 2 or completion_mask.shape != logps.shape or advantages.shape[0] != logps.shape[0]:
        raise ValueError(
            f"GRPO inputs must be logps [B, T], completion_mask [B, T] and advantages [B], got "
            f"{tuple(logps.shape)}, {tuple(completion_mask.shape)} and {tuple(advantages.shape)}"
        )
    if config.beta > 0 and ref_logps is None:
        raise ValueError(f"GRPO beta={config.beta} needs the reference log-probs (ref_logps)")
    mask = completion_mask.float()
    advantages = advantages.float().view(-1, 1)
    old_logps = logps.detach() if old_logps is None else old_logps
    ratio = torch.exp(logps - old_logps)
    clipped = torch.clamp(ratio, 1 - config.epsilon_low, 1 + config.epsilon_high)
    per_token = -torch.min(ratio * advantages, clipped * advantages)
    kl = None
    if ref_logps is not None:
        diff = ref_logps - logps
        per_token_kl = torch.exp(diff) - diff - 1
        if config.beta > 0:
            per_token = per_token + config.beta * per_token_kl
        kl = _masked_mean(per_token_kl.detach(), mask)
    summed = (per_token * mask).sum()
    if config.loss_type == "grpo":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif config.loss_type == "dr_grpo":
        loss = summed / (logps.shape[0] * config.max_new_tokens)
    else:
        loss = summed / (mask.sum().clamp(min=1.0) if num_tokens is None else num_tokens)
    low = ((ratio < 1 - config.epsilon_low) & (advantages < 0)).detach()
    high = ((ratio > 1 + config.epsilon_high) & (advantages > 0)).detach()
    return GRPOOutput(
        loss=loss,
        kl=kl,
        clip_low=_masked_mean(low.float(), mask),
        clip_high=_masked_mean(high.float(), mask),
        clip_region=_masked_mean((low | high).float(), mask),
    )


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def expand_to_generations(value: Any, num_generations: int) -> Any:
    """Repeat per-prompt rows so that completion k of prompt i is row ``i * G + k``.

    Tensors are repeated along dim 0 (``repeat_interleave``), lists and tuples item by item, mappings
    (a collated batch) value by value; anything else is an error naming its type.
    """
    if num_generations < 1:
        raise ValueError(f"num_generations must be >= 1, got {num_generations}")
    if isinstance(value, torch.Tensor):
        return value.repeat_interleave(num_generations, dim=0)
    if isinstance(value, Mapping):
        return {key: expand_to_generations(item, num_generations) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [item for item in value for _ in range(num_generations)]
    raise TypeError(f"cannot expand a {type(value).__name__} per prompt; expected a tensor, list or mapping")
