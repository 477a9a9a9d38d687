"""Checks that stop a comparison before any model work, naming the setting and value at fault.

A comparison loads a model, encodes profiles and trains method after method before the last one is
built, so a setting that would only fail at its turn (a bad schedule name, an adapter override, a
multi-token option letter, a checkpoint of another base model) is checked here first:
`check_settings` on the config alone, `check_fields` on the survey, and `check_letters` and
`check_resume` once the base model and tokenizer are loaded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn
from transformers import SchedulerType

from cuma.adapter import CuMAConfig
from cuma.compare.methods_run import train_dir
from cuma.config import EvalConfig, ExperimentConfig, TrainConfig
from cuma.data.experiment import ComparisonData
from cuma.data.render import letter_token_ids
from cuma.evaluation.scoring import PADDING_SIDES, PRECISIONS
from cuma.evaluation.topology import TOKEN_SCOPES
from cuma.methods import METHOD_FILE, base_identity, check_methods, get_method, method_overrides
from cuma.train.checkpoint import list_checkpoints
from cuma.train.optim import NO_WARMUP_SCHEDULES
from cuma.train.trainer import CHECKPOINT_DIR, validate


def check_settings(config: ExperimentConfig, methods: Sequence[str]) -> None:
    """Methods, train and eval settings, and every adapter method's resolved `CuMAConfig`."""
    check_methods(methods, config)
    if any(get_method(name).trainable for name in methods):
        validate(config.train)
        _check_schedule(config.train)
    _check_eval(config.eval, few_shot="few-shot" in methods)
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
            raise ValueError(f"eval.{name} names unknown profile fields {unknown}; known: {known}")


def check_fresh(train_root: Path, config: ExperimentConfig, methods: Sequence[str]) -> None:
    """Refuse to train over checkpoints an earlier run left (the caller skips this when resuming)."""
    for directory in _checkpoint_dirs(train_root, config, methods):
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
        raise ValueError(f"adapter_overrides.{name}: {err}") from None


def _check_schedule(config: TrainConfig) -> None:
    try:
        SchedulerType(config.schedule)
    except ValueError:
        known = [kind.value for kind in SchedulerType]
        raise ValueError(f"train.schedule={config.schedule!r}: expected one of {known}") from None
    if config.warmup_ratio > 0 and config.schedule in NO_WARMUP_SCHEDULES:
        raise ValueError(
            f"train.schedule={config.schedule!r} ignores warm-up but "
            f"train.warmup_ratio={config.warmup_ratio}; use constant_with_warmup or set warmup_ratio=0"
        )


def _check_eval(config: EvalConfig, few_shot: bool) -> None:
    for name, value, allowed in (
        ("padding_side", config.padding_side, PADDING_SIDES),
        ("precision", config.precision, PRECISIONS),
        ("routing_tokens", config.routing_tokens, TOKEN_SCOPES),
    ):
        if value not in allowed:
            raise ValueError(f"eval.{name}={value!r}: expected one of {list(allowed)}")
    if config.batch_size < 1:
        raise ValueError(f"eval.batch_size={config.batch_size!r}: must be at least 1")
    if few_shot and config.few_shot < 1:
        raise ValueError(f"eval.few_shot={config.few_shot!r}: the few-shot method needs at least 1 shot")


def _checkpoint_dirs(train_root: Path, config: ExperimentConfig, methods: Sequence[str]) -> list[Path]:
    """Where each trainable method and seed of the run keeps its checkpoints."""
    return [
        train_dir(train_root, name, seed) / CHECKPOINT_DIR
        for name in methods
        if get_method(name).trainable
        for seed in config.seeds
    ]
