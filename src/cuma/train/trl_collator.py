"""A collator that lets TRL's ``DPOTrainer`` train a CuMA model: the profile rows travel with the pairs.

TRL concatenates each batch's chosen and rejected sequences into one batch (chosen rows first) and
passes every other batch key to the model's ``forward``, so the profile embeddings only have to be laid
out the same way. TRL's ``GRPOTrainer`` passes no extra inputs to ``generate``, so it cannot route its
rollouts by profile; cuma's own trainer (``train.objective=grpo``) does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class DPOProfileCollator:
    """TRL's ``DataCollatorForPreference`` plus ``demographic_embeds`` [2B, D], chosen rows then rejected.

    Each example is what TRL's collator takes (``prompt_ids``, ``chosen_ids``, ``rejected_ids``) plus
    ``demographic_embeds``, the frozen encoder's vector of the person whose preference it is.
    """

    pad_token_id: int
    max_length: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        from trl.trainer.dpo_trainer import DataCollatorForPreference

        inner = DataCollatorForPreference(pad_token_id=self.pad_token_id, max_length=self.max_length)
        keys = ("prompt_ids", "chosen_ids", "rejected_ids", "ref_chosen_logps", "ref_rejected_logps")
        batch = inner([{k: ex[k] for k in keys if k in ex} for ex in examples])
        embeds = torch.tensor([ex["demographic_embeds"] for ex in examples], dtype=torch.float32)
        batch["demographic_embeds"] = torch.cat([embeds, embeds])
        return batch
