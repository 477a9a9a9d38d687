"""Toy data and helpers shared by the trainer tests: hand-made batches for tiny random models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cuma.config import ExperimentConfig, TrainConfig
from cuma.methods import PreparedModel, build_method
from cuma.quick import RandomProfileEncoder
from cuma.tiny import tiny_model
from cuma.train import TrainResult, train

ENCODER_DIM = 16


def toy_rows(n: int = 10, seq: int = 12, seed: int = 0) -> list[dict[str, Any]]:
    """Rows of random ids whose last 1-3 tokens are the answer, with a random profile embedding."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        ids = torch.randint(5, 500, (seq,), generator=g)
        labels = torch.full((seq,), -100)
        answer = 1 + i % 3
        labels[-answer:] = ids[-answer:]
        embed = torch.randn(ENCODER_DIM, generator=g)
        rows.append({"input_ids": ids, "labels": labels, "embed": embed, "respondent_id": f"r{i}"})
    return rows


def toy_collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ids = torch.stack([r["input_ids"] for r in rows])
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": torch.stack([r["labels"] for r in rows]),
        "demographic_embeds": torch.stack([r["embed"] for r in rows]),
        "respondent_id": [r["respondent_id"] for r in rows],
    }


def toy_config(adapter_overrides: dict | None = None, **train: Any) -> ExperimentConfig:
    """Small fp32 runs without trackers: 10 rows, batch 2, grad_accum 2 -> 3 steps per epoch."""
    settings = {
        "batch_size": 2,
        "grad_accum": 2,
        "epochs": 2,
        "lr": 1e-2,
        "precision": "fp32",
        "report_to": [],
    }
    settings.update(train)
    return ExperimentConfig(train=TrainConfig(**settings), adapter_overrides=adapter_overrides or {})


def toy_method(method: str, config: ExperimentConfig, family: str = "llama") -> PreparedModel:
    return build_method(method, tiny_model(family), config, encoder=RandomProfileEncoder(ENCODER_DIM))


def run(
    method: str,
    config: ExperimentConfig,
    output_dir: Path,
    rows: list[dict[str, Any]] | None = None,
    family: str = "llama",
    **kwargs: Any,
) -> tuple[PreparedModel, TrainResult]:
    """Build ``method`` on a fresh tiny model and train it on the toy rows."""
    prepared = toy_method(method, config, family)
    result = train(prepared, rows or toy_rows(), toy_collate, config.train, output_dir, **kwargs)
    return prepared, result


def weights(prepared: PreparedModel) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in prepared.trainable_parameters().items()}
