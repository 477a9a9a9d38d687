"""Cross-entropy over answer tokens only, summed so that gradient accumulation can take an exact mean."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def answer_token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of next-token cross-entropies over positions whose label is not -100 (float32).

    Only the answer positions are gathered before the softmax, so the [batch, seq, vocab] log-softmax
    is never materialised; the caller divides by the answer-token count of the whole optimizer step.
    """
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    picked = logits[:, :-1][mask].float()
    return F.cross_entropy(picked, shift_labels[mask], reduction="sum")


def count_answer_tokens(labels: torch.Tensor) -> torch.Tensor:
    return (labels[:, 1:] != IGNORE_INDEX).sum()
