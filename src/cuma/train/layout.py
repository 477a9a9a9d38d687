"""Where each training run lives, so `cuma train`, `cuma compare` and its checks find the same folder."""

from __future__ import annotations

from pathlib import Path


def train_dir(train_root: Path, name: str, seed: int) -> Path:
    """The run folder of method ``name`` trained with ``seed`` (its checkpoints and logs go inside)."""
    return train_root / f"{name}-seed{seed}"
