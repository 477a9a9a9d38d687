"""Checks that span objects, run before any model work and naming the setting and value at fault.

Each config dataclass checks its own values (`cuma.config`); what needs something else is checked here,
as early as that thing exists: `check_settings` against the method registry and the adapter configs,
`check_fresh` against checkpoints left on disk, `check_fields` against the survey, and `check_letters`
and `check_resume` once the base model and tokenizer are loaded. ``cuma compare`` and ``cuma train``
both call them, so a comparison fails before it trains its first method, not at the method's turn.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from cuma.adapter import CuMAConfig
from cuma.config import ExperimentConfig
from cuma.data.experiment import ComparisonData
from cuma.data.render import letter_token_ids
from cuma.errors import ConfigError
from cuma.methods import METHOD_FILE, base_identity, check_methods, get_method, method_overrides
from cuma.train.checkpoint import list_checkpoints
from cuma.train.layout import train_dir
from cuma.train.trainer import CHECKPOINT_DIR


def check_settings(config: ExperimentConfig, methods: Sequence[str]) -> None:
    """Every method is known, and every adapter method's preset with its overrides is a valid `CuMAConfig`."""
    check_methods(methods, config)
    for name in methods:
        _check_adapter(name, config)


def check_fields(config: ExperimentConfig, fields: list[str], main_group: str, known: list[str]) -> None:
    """The group, main-group and cell fields the eval settings name are profile fields of the survey."""
    chosen = {
        "group_fields": fields,
        "main_group": [main_group],
        "cell_fields": config.eval.cell_fields or [],
    }
    for name, values in chosen.items():
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"eval.{name} names unknown profile fields {unknown}; known: {known}")


def check_fresh(train_root: Path, config: ExperimentConfig, methods: Sequence[str]) -> None:
    """Refuse to train over checkpoints an earlier run left (the caller skips this when resuming)."""
    for directory in _checkpoint_dirs(train_root, config, methods):
        check_no_checkpoints(directory)


def check_no_checkpoints(directory: Path) -> None:
    """``directory`` holds no checkpoint of an earlier run."""
    found = list_checkpoints(directory)
    if found:
        raise FileExistsError(
            f"{found[-1]} is left from an earlier run; pass --resume to continue it or choose another "
            "output_dir"
        )


def check_resume(train_root: Path, config: ExperimentConfig, methods: Sequence[str], base: nn.Module) -> None:
    """Every checkpoint a resumed run would continue was written for the base model it has loaded."""
    expected = base_identity(base)
    for directory in _checkpoint_dirs(train_root, config, methods):
        found = list_checkpoints(directory)
        if not found:
            continue
        path = found[-1] / METHOD_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {found[-1]} is not a complete checkpoint")
        saved = json.loads(path.read_text()).get("base")
        if saved != expected:
            raise ValueError(
                f"{path}: written for base model {saved!r}, but model.name={config.model.name!r} loads "
                f"{expected!r}; resume with the model it was trained on or choose another output_dir"
            )


def check_letters(tokenizer: Any, data: ComparisonData) -> None:
    """Every option-letter set of the sampled examples is one token per letter for this tokenizer."""
    first: dict[tuple[str, ...], Any] = {}
    for rows in data.splits.values():
        for ex in rows:
            first.setdefault(ex.option_letters, ex)
    for letters, ex in first.items():
        try:
            letter_token_ids(tokenizer, letters)
        except ValueError as err:
            raise ValueError(f"survey {data.survey.name!r}, question {ex.question_id!r}: {err}") from None


def _check_adapter(name: str, config: ExperimentConfig) -> None:
    """An adapter method's preset with its ``adapter_overrides`` is a valid `CuMAConfig`."""
    spec = get_method(name)
    if spec.kind != "adapter":
        return
    overrides = method_overrides(spec, config.adapter_overrides.get(name, {}))
    try:
        CuMAConfig.from_preset(spec.preset, **overrides)
    except ValueError as err:
        raise ConfigError(f"adapter_overrides.{name}: {err}") from None


def _checkpoint_dirs(train_root: Path, config: ExperimentConfig, methods: Sequence[str]) -> list[Path]:
    """Where each trainable method and seed of the run keeps its checkpoints."""
    return [
        train_dir(train_root, name, seed) / CHECKPOINT_DIR
        for name in methods
        if get_method(name).trainable
        for seed in config.seeds
    ]
