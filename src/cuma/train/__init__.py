"""Supervised fine-tuning for every trainable method (see `cuma.train.trainer`).

Usage::

    prepared = build_method("cuma", base_model, config, encoder_dim=encoder.dim)
    result = train(prepared, train_examples, collate_fn, config.train, output_dir)
"""

from cuma.train.checkpoint import Position, list_checkpoints
from cuma.train.trainer import TrainResult, train

__all__ = ["Position", "TrainResult", "list_checkpoints", "train"]
