"""Experiment configuration: dataclasses loadable from YAML, with command-line overrides.

Override convention (one, documented): dotted ``section.field=value`` pairs after the options, e.g.
``cuma compare --config configs/gss-cuma.yaml train.lr=1e-4 data.n_train=2000 methods=[base,cuma]``.
Values are parsed as YAML scalars/lists, so ``1e-4``, ``true`` and ``[a, b]`` mean what they look like.
A missing entry of a free-form mapping is created, so ``adapter_overrides.cuma.rank=64`` works whether or
not the config already configures ``cuma``; its field names are checked when the method is built.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class ModelConfig:
    """Which base model and demographic encoder to use."""

    name: str = "smollm2-135m-instruct"  # alias, local path or hub id (cuma.models.load_base_model)
    encoder: str = "all-MiniLM-L6-v2"  # sentence encoder for profiles (cuma.encoder.DemographicEncoder)
    encoder_pooling: str = "mean"  # "mean" (masked) or "last"
    dtype: str = "float32"  # weights dtype; compute precision is train.precision


@dataclass
class DataConfig:
    """Which survey, how it is split and sampled, and how prompts are rendered."""

    dataset: str = "gss-spending-2018"  # built-in name or path to a spec YAML / WVB directory
    seed: int = 0
    valid_fraction: float = 0.1  # respondents set aside: never trained on, scored only for tuning
    test_fraction: float = 0.2
    # Respondents scored in the report's test columns: "test", or "valid" to tune settings (lr, rank)
    # without looking at the test respondents; the report then says it shows validation numbers.
    score_split: str = "test"
    # Held-out-profile split: field -> values; respondents in these cells never appear in training.
    heldout_cells: dict[str, list[str]] = field(default_factory=dict)
    n_train: int | None = None  # examples sampled per split (stratified by question); None = all
    n_test: int | None = None
    n_heldout: int | None = None
    persona_in_prompt: bool = True  # the profile sentence in the system prompt (the paper's default)
    max_length: int = 256  # tokens; longer examples are an error, not silently truncated


@dataclass
class TrainConfig:
    """Optimisation settings shared by every trainable method."""

    epochs: float = 1.0
    max_steps: int | None = None  # caps optimizer steps; None = from epochs
    batch_size: int = 16  # per device, per micro-step
    grad_accum: int = 1
    lr: float = 2e-4  # experts (and every parameter without its own rate)
    router_lr: float | None = None  # None = lr
    projection_lr: float | None = None  # None = lr
    weight_decay: float = 0.0
    schedule: str = "constant"  # any transformers scheduler name: constant, linear, cosine, ...
    warmup_ratio: float = 0.0  # of the real number of optimizer steps
    max_grad_norm: float = 1.0
    precision: str = "bf16"  # "bf16" (autocast) or "fp32"
    seed: int = 42
    save_every: int | None = None  # optimizer steps between checkpoints; the final one is always saved
    keep_checkpoints: int | None = 2  # newest checkpoints kept in output_dir/checkpoints; None = all
    log_every: int = 10
    routing_stats_every: int = 50  # steps between expert-load / router-entropy logs
    report_to: list[str] = field(default_factory=lambda: ["tensorboard"])


@dataclass
class EvalConfig:
    """Scoring and metrics."""

    batch_size: int = 32
    padding_side: str = "left"  # "left" or "right"; scoring gives the same numbers either way
    precision: str = "fp32"  # "fp32", or "bf16" autocast (faster on CPUs and GPUs with bf16 units)
    routing_tokens: str = "answer"  # routing topology from the "answer" position or the whole "prompt"
    few_shot: int = 3  # examples for the few-shot prompting baseline
    group_fields: list[str] | None = None  # None = every profile field of the dataset
    main_group: str | None = None  # for macro accuracy; None = the dataset's first profile field
    # Fields whose value combination is the cell-majority baseline's cell; None = every group field
    # (with many fields nearly every unseen respondent's cell is empty and falls back to the population).
    cell_fields: list[str] | None = None


@dataclass
class ExperimentConfig:
    """One experiment: a dataset, a base model and the methods compared on it."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    methods: list[str] = field(default_factory=lambda: ["base", "persona", "lora", "cuma", "logistic"])
    # Per-method overrides of the adapter config, e.g. {"cuma": {"rank": 64, "alpha": 128}}.
    adapter_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [42])
    output_dir: str = "runs/default"

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        raw = yaml.safe_load(path.read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
        return cls.from_dict(raw, source=str(path)).with_overrides(overrides or [])

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
        return _build(cls, raw, source)

    def with_overrides(self, overrides: list[str]) -> ExperimentConfig:
        raw = self.to_dict()
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"override {item!r} is not of the form section.field=value")
            *parents, leaf = key.split(".")
            node = raw
            for part in parents:
                # A new key becomes an entry of a mapping field, or an unknown field that _build names.
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ValueError(f"override {item!r}: {part!r} is not a config section")
            node[leaf] = yaml.safe_load(value)
        return _build(type(self), raw, "command-line overrides")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, raw: dict[str, Any], source: str, prefix: str = "") -> Any:
    """Build a dataclass from a mapping, rejecting unknown keys by their dotted name."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        names = ", ".join(prefix + k for k in unknown)
        raise ValueError(f"{source}: unknown config field(s) {names}; known: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in raw.items():
        value = coerce_number(value, hints[name], f"{source}: {prefix}{name}")
        sub = _SECTIONS.get(name) if cls is ExperimentConfig else None
        if sub is not None:
            if not isinstance(value, dict):
                raise ValueError(f"{source}: {prefix}{name} must be a mapping, got {value!r}")
            value = _build(sub, value, source, prefix=f"{prefix}{name}.")
        kwargs[name] = value
    return cls(**kwargs)


_KIND_NAMES = {int: "an integer", float: "a float"}


def coerce_number(value: Any, hint: Any, where: str) -> Any:
    """YAML 1.1 reads ``1e-4`` as a string; numbers are converted by the field's declared type."""
    if not isinstance(value, str):
        return value
    allowed = typing.get_args(hint) or (hint,)
    for kind in (int, float):
        if kind in allowed and str not in allowed:
            try:
                return kind(value)
            except ValueError:
                raise ValueError(f"{where} must be {_KIND_NAMES[kind]}, got {value!r}") from None
    return value


_SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}
