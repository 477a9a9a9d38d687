"""DPO losses on per-sequence log-probs, with the formulas of TRL's `DPOTrainer` (trl 1.16.0).

With the log-ratios ``chosen = logp(y_w) - ref_logp(y_w)``, ``rejected = logp(y_l) - ref_logp(y_l)`` and
``delta = chosen - rejected``, per pair:

- ``sigmoid`` (DPO): ``-(1 - eps) * logsigmoid(beta * delta) - eps * logsigmoid(-beta * delta)``, where
  ``eps`` is ``label_smoothing``, the probability that a label is flipped (conservative DPO, the meaning
  earlier TRL releases gave ``label_smoothing`` with this loss); ``eps = 0`` is TRL 1.16's sigmoid, which
  keeps the smoothing for its ``robust`` and ``exo_pair`` losses only.
- ``ipo``: ``(chosen / n_w - rejected / n_l - 1 / (2 * beta)) ** 2``: as in TRL, each log-ratio is
  divided by its response's token count so ``beta`` (IPO's tau) does not depend on response length.
- ``hinge`` (SLiC): ``relu(1 - beta * delta)``.

The implicit rewards ``beta * log-ratio`` (detached), their accuracy and margin are returned for logging.
`token_logps` / `sequence_logps` turn a forward pass into the log-probs these losses take.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cuma.config import DPOConfig
from cuma.train.loss import IGNORE_INDEX


@dataclass(frozen=True)
class DPOOutput:
    """Per-pair losses and the implicit rewards of both responses.

    Attributes:
        losses: [B], differentiable; the trainer takes their mean (or sum over an accumulated step).
        chosen_rewards, rejected_rewards: [B], ``beta * (logp - ref_logp)``, detached.
    """

    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor

    @property
    def accuracies(self) -> torch.Tensor:
        """1.0 where the chosen response has the higher implicit reward."""
        return (self.chosen_rewards > self.rejected_rewards).float()

    @property
    def margins(self) -> torch.Tensor:
        return self.chosen_rewards - self.rejected_rewards

    def metrics(self) -> dict[str, float]:
        """Batch means under TRL's log names."""
        return {
            "loss": self.losses.detach().mean().item(),
            "rewards/chosen": self.chosen_rewards.mean().item(),
            "rewards/rejected": self.rejected_rewards.mean().item(),
            "rewards/accuracies": self.accuracies.mean().item(),
            "rewards/margins": self.margins.mean().item(),
        }


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    config: DPOConfig | None = None,
    *,
    chosen_tokens: torch.Tensor | None = None,
    rejected_tokens: torch.Tensor | None = None,
) -> DPOOutput:
    """Losses of B pairs from summed response log-probs [B] (see the module docstring for the formulas).

    Args:
        chosen_tokens, rejected_tokens: response token counts [B]; required by ``ipo``.
    """
    config = config or DPOConfig()
    inputs = (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    shapes = [tuple(x.shape) for x in inputs]
    if len(set(shapes)) != 1 or len(shapes[0]) != 1:
        raise ValueError(f"DPO log-probs must be four tensors of one shape [B], got {shapes}")
    chosen = policy_chosen_logps.float() - ref_chosen_logps.float()
    rejected = policy_rejected_logps.float() - ref_rejected_logps.float()
    beta, eps = config.beta, config.label_smoothing
    if config.loss_type == "sigmoid":
        delta = beta * (chosen - rejected)
        losses = -(1 - eps) * F.logsigmoid(delta) - eps * F.logsigmoid(-delta)
    elif config.loss_type == "hinge":
        losses = torch.relu(1 - beta * (chosen - rejected))
    else:
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("the ipo loss needs chosen_tokens and rejected_tokens (response token counts)")
        per_token = chosen / chosen_tokens.clamp(min=1) - rejected / rejected_tokens.clamp(min=1)
        losses = (per_token - 1 / (2 * beta)) ** 2
    return DPOOutput(losses, beta * chosen.detach(), beta * rejected.detach())


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token log-probs at the labelled positions, float32 [B, T-1] (0 elsewhere), and their mask.

    Position t holds ``log p(labels[t+1] | tokens <= t)``. Only the labelled rows of the logits are
    gathered and cast before the log-sum-exp, so the [B, T, V] log-softmax is never materialised.
    """
    if logits.ndim != 3 or logits.shape[:2] != labels.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} do not line up with labels {tuple(labels.shape)}: expected "
            "[B, T, V] and [B, T]"
        )
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    picked = logits[:, :-1][mask].float()
    values = picked.gather(-1, shift_labels[mask].unsqueeze(-1)).squeeze(-1) - torch.logsumexp(picked, dim=-1)
    out = torch.zeros(mask.shape, dtype=torch.float32, device=logits.device)
    return out.masked_scatter(mask, values), mask


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the labelled tokens' log-probs per row (float32 [B]) and their count (long [B])."""
    values, mask = token_logps(logits, labels)
    return values.sum(-1), mask.sum(-1)
