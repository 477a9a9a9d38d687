"""The training loss of a CuMA model for trainers that compute the LM loss from the logits themselves.

``transformers.Trainer`` optimises ``outputs.loss``, which a CuMA model already returns as LM loss + aux
loss. TRL's ``SFTTrainer`` instead computes the token loss from its own fused log-probs and only adds an
aux loss for Hugging Face mixture-of-experts configs, so the router losses would be dropped; pass
``compute_loss_func=lm_plus_aux_loss`` to it (or any trainer with the same hook) to keep them.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.loss.loss_utils import ForCausalLMLoss


def lm_plus_aux_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
    """Next-token cross-entropy over labels != -100 (transformers' causal-LM loss) + ``outputs.aux_loss``."""
    logits = outputs.logits
    lm_loss = ForCausalLMLoss(logits, labels, logits.shape[-1], num_items_in_batch=num_items_in_batch)
    return lm_loss + outputs.aux_loss.to(lm_loss.dtype)
