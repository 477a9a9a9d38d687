"""Supervised fine-tuning for every trainable method (see `cuma.train.trainer`).

Usage::

    prepared = build_method("cuma", base_model, config, encoder=encoder)
    result = train(prepared, train_examples, collate_fn, config.train, output_dir)

The names below load on first use, so ``cuma train --help`` (`cuma.train.cli`) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cuma.lazy import lazy_exports

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
__getattr__ = lazy_exports("cuma.train", _HOMES)
