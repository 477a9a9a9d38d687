"""Supervised fine-tuning for every trainable method (see `cuma.train.trainer`).

Usage::

    prepared = build_method("cuma", base_model, config, encoder=encoder)
    result = train(prepared, train_examples, collate_fn, config.train, output_dir)

The names below load on first use, so ``cuma train --help`` (`cuma.train.cli`) does not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cuma.train.checkpoint import Position, list_checkpoints
    from cuma.train.trainer import TrainResult, train

_HOMES = {
    "Position": "cuma.train.checkpoint",
    "list_checkpoints": "cuma.train.checkpoint",
    "TrainResult": "cuma.train.trainer",
    "train": "cuma.train.trainer",
}

__all__ = ["Position", "TrainResult", "list_checkpoints", "train"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'cuma.train' has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
