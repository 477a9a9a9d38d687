"""Checks that span objects, run before any model work and naming the setting and value at fault.

Each config dataclass checks its own values (`cuma.config`); what needs something else is checked here,
as early as that thing exists: `check_comparison_launch` against the launcher, `check_settings` against
the method registry and the adapter configs, `check_fresh` against checkpoints left on disk,
`check_fields` and `check_scored_respondents` against the survey and its sample, and `check_letters` and
`check_resume` once the base model and tokenizer are loaded. ``cuma compare`` and ``cuma train`` both
call them, so a comparison fails before it trains its first method, not at the method's turn.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from cuma.adapter import CuMAConfig
from cuma.config import ExperimentConfig
from cuma.data.experiment import EVAL_SPLITS, ComparisonData
from cuma.data.render import letter_token_ids
from cuma.errors import ConfigError
from cuma.methods import (
    base_identity,
    check_methods,
    entry_config,
    get_method,
    method_overrides,
    persona_in_prompt,
    split_entry,
)
from cuma.sidecar import read_sidecar
from cuma.train.checkpoint import (
    MODEL_DIR,
    CheckpointError,
    check_run_shape,
    list_checkpoints,
    newest_valid_checkpoint,
    read_run_shape,
)
from cuma.train.layout import run_identity, starting_model, train_dir, train_settings
from cuma.train.trainer import CHECKPOINT_DIR


def check_comparison_launch() -> None:
    """A comparison is refused under DeepSpeed ZeRO-3, before any work: ZeRO-3 partitions the module it
    trains for good, and a comparison scores, diagnoses and trains its further methods on that one
    shared base model (tests/test_multiprocess_deepspeed.py shows `cuma train` under ZeRO-3)."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() != "true":
        return
    from accelerate.utils import DeepSpeedPlugin

    if DeepSpeedPlugin().zero_stage == 3:
        raise ConfigError(
            "cuma compare under DeepSpeed ZeRO-3 is not supported: ZeRO-3 partitions the base model that "
            "every method of a comparison shares; train each method with cuma train under ZeRO-3, or "
            "compare under DDP, FSDP or ZeRO-2 (configs/accelerate/)"
        )


def check_settings(config: ExperimentConfig, methods: Sequence[str]) -> None:
    """Every method is known, every adapter method's preset with its overrides is a valid `CuMAConfig`, and
    every trained method can be trained under ``train.gradient_checkpointing`` when it is on."""
    check_methods(methods, config)
    for entry in methods:
        name = split_entry(entry)[0]
        _check_adapter(name, config)
        problem = get_method(name).gradient_checkpointing_problem()
        if config.train.gradient_checkpointing and problem is not None:
            raise ConfigError(f"train.gradient_checkpointing=true: {problem}")


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


def check_resume(
    train_root: Path,
    config: ExperimentConfig,
    methods: Sequence[str],
    base: nn.Module,
    data: ComparisonData,
    allow_changed: Sequence[str] = (),
) -> None:
    """Every checkpoint a resumed comparison would continue belongs to this run: written for the base model
    it has loaded, with the same train settings, data sample and model (`cuma.train.layout.run_identity`),
    so no method is trained or scored before a later one would refuse."""
    expected_base = base_identity(base)
    for entry in methods:
        name, run = entry_config(entry, config)
        if not get_method(name).trainable:
            continue
        persona = persona_in_prompt(name, run)
        for seed in run.seeds:
            root = train_dir(train_root, name, seed, run.train.objective) / CHECKPOINT_DIR
            start, skipped = newest_valid_checkpoint(root)
            if start is None:
                if skipped:
                    raise CheckpointError(f"no valid checkpoint to resume in {root}: " + "; ".join(skipped))
                continue
            saved_base = read_sidecar(start / MODEL_DIR, verify=False).get("base_model")
            if saved_base != expected_base:
                raise ValueError(
                    f"{start / MODEL_DIR}: written for base model {saved_base!r}, but model.name="
                    f"{config.model.name!r} loads {expected_base!r}; resume with the model it was trained on "
                    "or choose another output_dir"
                )
            train = dataclasses.replace(run.train, seed=seed)
            seeded = dataclasses.replace(run, train=train)
            now = {**train_settings(train), **run_identity(seeded, name, data.examples("train", persona))}
            saved = read_run_shape(start)
            check_run_shape(start, {k: saved.get(k) for k in now}, now, set(allow_changed))


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


def check_scored_respondents(data: ComparisonData) -> None:
    """Every scored split that has answers has at least 2 respondents: the report's intervals are a
    bootstrap over respondents (`cuma.metrics.bootstrap`), which one respondent cannot give, and the
    comparison should say so before it trains, not when it writes the report."""
    sizes = {"test": "data.n_test", "heldout": "data.n_heldout"}
    for split in EVAL_SPLITS:
        rows = data.splits.get(split, [])
        people = {ex.respondent_id for ex in rows}
        if rows and len(people) < 2:
            raise ConfigError(
                f"the {split} split has {len(rows)} answer(s) from {len(people)} respondent; the report's "
                f"bootstrap over respondents needs at least 2: raise {sizes.get(split, 'its size')} or use "
                "a larger split"
            )


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
    runs = [entry_config(entry, config) for entry in methods]
    return [
        train_dir(train_root, name, seed, run.train.objective) / CHECKPOINT_DIR
        for name, run in runs
        if get_method(name).trainable
        for seed in config.seeds
    ]


def check_starting_points(train_root: Path, config: ExperimentConfig, methods: Sequence[str]) -> None:
    """Every preference entry that starts from ``train.init_from`` finds its model, or an SFT entry of the
    same method earlier in ``methods`` will write it, for every seed, before any training."""
    if config.train.init_from is None:
        return
    earlier: set[str] = set()
    for entry in methods:
        name, run = entry_config(entry, config)
        if run.train.objective == "sft":
            earlier.add(name)
            continue
        if not get_method(name).trainable or name in earlier:
            continue
        for seed in config.seeds:
            try:
                starting_model(config.train.init_from, name, seed, train_root)
            except FileNotFoundError as err:
                raise ConfigError(
                    f"methods entry {entry!r}: {err}; list {name!r} (its SFT run) before it, or point "
                    "train.init_from at a trained model"
                ) from None
