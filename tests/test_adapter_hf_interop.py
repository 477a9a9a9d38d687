"""A CuMA model in the tools users already have: transformers' Trainer, TRL's SFTTrainer and DPOTrainer,
gradient checkpointing, and the loss that includes the router losses."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from transformers import Trainer, TrainingArguments

from cuma.adapter import CuMAConfig, get_cuma_model
from cuma.tiny import tiny_model, tiny_tokenizer

DEMO = 16
ROWS = 4


def adapted(**overrides: Any) -> torch.nn.Module:
    settings = {"demographic_input_dim": DEMO, "load_balancing_weight": 1.0, **overrides}
    model = get_cuma_model(tiny_model(), CuMAConfig.from_preset("cuma", **settings))
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in model.layers.values():
            layer.cuma_B["default"].normal_(std=0.3)
    return model


def rows() -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(ROWS):
        ids = torch.randint(4, 500, (7,), generator=generator)
        labels = ids.clone()
        labels[:4] = -100
        out.append(
            {
                "input_ids": ids.tolist(),
                "labels": labels.tolist(),
                "demographic_embeds": torch.randn(DEMO, generator=generator).tolist(),
            }
        )
    return out


def collate(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """The one piece a user writes: stack the profile vectors beside the tokens (rows are equal length)."""
    batch = {key: torch.tensor([ex[key] for ex in examples]) for key in ("input_ids", "labels")}
    batch["attention_mask"] = torch.ones_like(batch["input_ids"])
    batch["demographic_embeds"] = torch.tensor([ex["demographic_embeds"] for ex in examples])
    return batch


def test_loss_is_lm_loss_plus_aux_loss() -> None:
    model = adapted()
    batch = collate(rows())
    out = model(**batch)
    assert out.aux_loss > 0
    torch.testing.assert_close(out.loss, out.lm_loss + out.aux_loss)
    plain = model(**{k: v for k, v in batch.items() if k != "labels"})
    logits, labels = plain.logits[:, :-1], batch["labels"][:, 1:]
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    torch.testing.assert_close(out.lm_loss, expected)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    plain = adapted(router_dropout=0.0).train()
    checkpointed = copy.deepcopy(plain)
    checkpointed.gradient_checkpointing_enable()
    assert checkpointed.get_base_model().is_gradient_checkpointing
    batch = collate(rows())
    for model in (plain, checkpointed):
        model(**batch).loss.backward()
    pairs = [
        (a, b)
        for (name, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters(), strict=True)
        if a.requires_grad
    ]
    assert pairs and all(a.grad is not None for a, _ in pairs)
    for a, b in pairs:
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def test_checkpointing_enabled_behind_the_adapters_back_is_a_clear_error() -> None:
    model = adapted().train()
    model.get_base_model().gradient_checkpointing_enable()  # plain transformers: no routing on recompute
    loss = model(**collate(rows())).loss
    with pytest.raises(RuntimeError, match=r"enable gradient checkpointing through it"):
        loss.backward()
    with pytest.raises(ValueError, match="must be non-reentrant"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})


def expected_first_loss(model: torch.nn.Module) -> float:
    """The loss of the first (only) batch under the initial weights: what a trainer logs at step 1."""
    with torch.no_grad():
        out = copy.deepcopy(model).eval()(**collate(rows()))
    assert out.aux_loss > 0.1, "the router loss must be large enough to be seen in the logged loss"
    return float(out.lm_loss + out.aux_loss)


def changed(before: dict[str, torch.Tensor], model: torch.nn.Module) -> bool:
    return any(not torch.equal(before[n], p) for n, p in model.named_parameters() if p.requires_grad)


def test_transformers_trainer_trains_a_step_on_lm_plus_aux_loss(tmp_path: Path) -> None:
    model = adapted()
    expected = expected_first_loss(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=ROWS, learning_rate=1e-2,
        report_to=[], remove_unused_columns=False, save_strategy="no", logging_steps=1, use_cpu=True,
    )  # fmt: skip
    trainer = Trainer(model=model, args=args, train_dataset=rows(), data_collator=collate)
    trainer.train()
    assert trainer.state.log_history[0]["loss"] == pytest.approx(expected, rel=1e-4)
    assert changed(before, model)


def test_trl_sft_trainer_trains_a_step_with_the_aux_loss(tmp_path: Path) -> None:
    from trl import SFTConfig, SFTTrainer

    from cuma.adapter.loss import lm_plus_aux_loss

    model = adapted()
    expected = expected_first_loss(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    args = SFTConfig(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=ROWS, learning_rate=1e-2,
        report_to=[], remove_unused_columns=False, save_strategy="no", logging_steps=1, use_cpu=True,
        dataset_kwargs={"skip_prepare_dataset": True}, bf16=False,  # TRL's default is bf16 autocast
    )  # fmt: skip
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows()),
        data_collator=collate,
        processing_class=tiny_tokenizer(),
        compute_loss_func=lm_plus_aux_loss,
    )
    trainer.train()
    assert trainer.state.log_history[0]["loss"] == pytest.approx(expected, rel=1e-4)
    assert changed(before, model)
