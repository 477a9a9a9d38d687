"""``--quick``: the full comparison pipeline on a tiny random model, a stand-in encoder and a small sample.

Every stage runs (data, splits, encoding, training, scoring, metrics, references, topology, report),
so a quick run checks the whole path in well under a minute; its numbers mean nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence

import torch

from cuma.config import ExperimentConfig
from cuma.data.profiles import KEY_VALUE

RANDOM_ENCODER = "tiny-random"
"""``model.encoder`` alias of `RandomProfileEncoder`, the quick run's stand-in for MiniLM."""

QUICK_OVERRIDES = {
    "model": {"name": "tiny-llama", "encoder": RANDOM_ENCODER},
    "data": {"n_train": 72, "n_test": 54, "n_heldout": 36},
    # A large learning rate so that a handful of steps visibly moves the adapters.
    "train": {
        "max_steps": 4,
        "batch_size": 8,
        "grad_accum": 1,
        "lr": 5e-3,
        "precision": "fp32",
        "report_to": [],
    },
    "eval": {"batch_size": 32, "precision": "fp32", "interference_examples": 4},
}
"""Sections and fields a quick run replaces; everything else (dataset, methods, cells, seeds) is kept."""


def quick_config(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with `QUICK_OVERRIDES` applied, no ``method_lr`` (rates tuned for the real model mean
    nothing for the tiny one: every entry trains at the quick rate) and its output directory suffixed
    with ``-quick``."""
    sections = {
        name: dataclasses.replace(getattr(config, name), **fields) for name, fields in QUICK_OVERRIDES.items()
    }
    output_dir = f"{config.output_dir.rstrip('/')}-quick"
    return dataclasses.replace(config, **sections, method_lr={}, output_dir=output_dir)


class RandomProfileEncoder:
    """A deterministic stand-in encoder: each profile text maps to a fixed random unit vector.

    The vector is seeded by a hash of the text, so it is the same in every process and batch, and
    different profiles get different vectors; it carries no meaning beyond identity.
    """

    def __init__(self, dim: int = 32) -> None:
        self.dim = dim
        self.template = KEY_VALUE

    def identity(self) -> dict[str, object]:
        """Like `cuma.encoder.DemographicEncoder.identity`, so adapters record which encoder they saw."""
        return {
            "name_or_path": RANDOM_ENCODER,
            "pooling": "none",
            "max_length": 0,
            "normalize": True,
            "dim": self.dim,
        }

    def adapter_settings(self) -> dict[str, object]:
        return {
            "demographic_input_dim": self.dim,
            "encoder": self.identity(),
            "profile_template": self.template.to_dict(),
        }

    def encode(self, items: Sequence[str | Mapping[str, object]]) -> torch.Tensor:
        rows = []
        for item in items:
            text = item if isinstance(item, str) else KEY_VALUE.render(item)
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            vector = torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))
            rows.append(vector / vector.norm())
        return torch.stack(rows) if rows else torch.empty(0, self.dim)
