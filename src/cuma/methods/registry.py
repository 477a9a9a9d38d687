"""The registry of methods: every baseline and variant is a name in the config, not a script.

What each method sees (the paper's ablations hinge on it):

* ``base`` never sees the profile: the generic-assistant prompt ("vanilla" in the paper).
* ``persona`` and ``few-shot`` always see it in the system prompt; few-shot adds k answered
  questions from training respondents of the same main group (``cuma.evaluation.few_shot``).
* Every trained method follows ``data.persona_in_prompt`` (default True, the paper's setting), so the
  dense and mixture baselines get exactly the demographic text CuMA gets (docs/design.md, "Data").
* ``cuma``, ``cuma-soft`` and ``demographic-only`` also route on the encoder embedding of the profile.
* ``no-demographic`` removes the routing input for real (the router reads the hidden state only) and
  keeps the persona prompt, so against ``cuma`` it isolates the routing signal. The paper's released
  "w/o demographic" run instead kept the routing and dropped the persona; reproduce that with
  ``cuma`` and ``data.persona_in_prompt=false``.
* ``majority``, ``cell-majority``, ``logistic`` and ``logistic-pool`` are the non-LLM reference points,
  and ``random-draw``,
  ``shuffled-truth`` and ``always-first`` the calibration rows (`cuma.reference_baselines`); they are
  listed here so that one registry validates a config, and are run by the evaluation code, not built here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from cuma.config import ExperimentConfig, Objective, PrefixConfig
from cuma.errors import ConfigError
from cuma.fieldcheck import check_mapping

Kind = Literal["prompt", "adapter", "full", "prefix", "reference"]


@dataclass(frozen=True)
class MethodSpec:
    """A method's identity: how it is built and whether its prompt carries the profile."""

    name: str
    kind: Kind
    description: str
    persona: bool | None = None  # fixed True/False, or None = follow data.persona_in_prompt
    preset: str | None = None  # CuMAConfig preset for kind "adapter"
    few_shot: bool = False

    @property
    def trainable(self) -> bool:
        return self.kind in ("adapter", "full", "prefix")

    def gradient_checkpointing_problem(self) -> str | None:
        """Why ``train.gradient_checkpointing`` cannot train this method, or None when it can."""
        if self.kind == "prefix":
            return (
                f"method {self.name!r} (prefix tuning) feeds its prefix through the key/value cache, which "
                "a checkpointed block cannot recompute; set train.gradient_checkpointing=false for it"
            )
        return None


_SPECS = [
    MethodSpec("base", "prompt", "base model, generic system prompt, no training", persona=False),
    MethodSpec("persona", "prompt", "base model, profile in the system prompt, no training", persona=True),
    MethodSpec(
        "few-shot",
        "prompt",
        "persona prompt plus k answered questions of the same group",
        persona=True,
        few_shot=True,
    ),
    MethodSpec("lora", "adapter", "dense LoRA (one expert, no router)", preset="lora"),
    MethodSpec(
        "lora-matched",
        "adapter",
        "dense LoRA sized to CuMA's total trainable parameters, routers included (rank in adapter_overrides)",
        preset="lora",
    ),
    MethodSpec("full", "full", "full fine-tuning of every base weight"),
    MethodSpec("prefix", "prefix", "prefix tuning (PEFT), 32 virtual tokens"),
    MethodSpec("hydralora", "adapter", "HydraLoRA: shared A, soft hidden-state gate", preset="hydralora"),
    MethodSpec(
        "mixlora", "adapter", "MixLoRA: per-expert A and B, top-2 hidden-state gate", preset="mixlora"
    ),
    MethodSpec(
        "cuma", "adapter", "CuMA: top-2 of 8 experts, router on hidden state + profile", preset="cuma"
    ),
    MethodSpec("cuma-soft", "adapter", "CuMA with all experts softmax-weighted", preset="cuma-soft"),
    MethodSpec("demographic-only", "adapter", "CuMA routed on the profile alone", preset="demographic-only"),
    MethodSpec("no-demographic", "adapter", "CuMA routed on the hidden state alone", preset="no-demographic"),
    MethodSpec("majority", "reference", "population majority answer per question"),
    MethodSpec("cell-majority", "reference", "majority answer of the respondent's demographic cell"),
    MethodSpec("logistic", "reference", "multinomial logistic regression per question on the profile"),
    MethodSpec("logistic-pool", "reference", "the logistic regression fitted on every training-split answer"),
    MethodSpec("random-draw", "reference", "calibration row: an answer drawn from the training distribution"),
    MethodSpec("shuffled-truth", "reference", "calibration row: true answers permuted among respondents"),
    MethodSpec("always-first", "reference", "calibration row: the first option for everyone"),
]
METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name]


def split_entry(entry: str) -> tuple[str, str | None]:
    """A ``methods`` entry is ``NAME`` or ``NAME@OBJECTIVE`` (``cuma@dpo``): the method trained with another
    objective than ``train.objective``, so SFT, DPO and GRPO runs of a method share one report."""
    name, sep, objective = entry.partition("@")
    spec = get_method(name)
    if not sep:
        return name, None
    if objective not in get_args(Objective):
        raise ConfigError(
            f"methods entry {entry!r}: unknown objective {objective!r}; expected {get_args(Objective)}"
        )
    if not spec.trainable:
        raise ConfigError(f"methods entry {entry!r}: method {name!r} ({spec.kind}) is not trained")
    return name, objective


def entry_config(entry: str, config: ExperimentConfig) -> tuple[str, ExperimentConfig]:
    """The method of a ``methods`` entry and the config it runs with: its own objective, if it names one,
    and its ``method_lr`` as that objective's learning rate."""
    name, objective = split_entry(entry)
    if objective is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, objective=objective))
    lr = config.method_lr.get(entry)
    if lr is None:
        return name, config
    own = config.train.objective
    if own == "sft":
        return name, dataclasses.replace(config, train=dataclasses.replace(config.train, lr=float(lr)))
    section = getattr(config, own)
    return name, dataclasses.replace(config, **{own: dataclasses.replace(section, lr=float(lr))})


def check_methods(names: Iterable[str], config: ExperimentConfig | None = None) -> None:
    """Fail before any work on an unknown method, on a ``method_lr`` entry that names none, or on adapter
    overrides that no build would accept."""
    for name in names:
        split_entry(name)
    if config is not None:
        for entry in config.method_lr:
            try:
                split_entry(entry)
            except ValueError as err:
                raise ConfigError(f"method_lr.{entry}: {err}") from None
        for name, overrides in config.adapter_overrides.items():
            if name not in METHODS:
                raise ValueError(
                    f"adapter_overrides.{name}: unknown method; known methods: {', '.join(METHODS)}"
                )
            method_overrides(METHODS[name], overrides)


def method_overrides(spec: MethodSpec, overrides: dict[str, Any]) -> dict[str, Any]:
    """``adapter_overrides.<method>`` checked against the method's config class, each value by its type.

    The mapping is free-form in ``ExperimentConfig``; here its fields are those of `CuMAConfig` for
    adapters and `PrefixConfig` for prefix tuning, typed by their declarations.
    """
    where = f"adapter_overrides.{spec.name}"
    if not overrides:
        return {}
    if spec.kind == "adapter":
        from cuma.adapter import CuMAConfig

        settings: type = CuMAConfig
    elif spec.kind == "prefix":
        settings = PrefixConfig
    else:
        raise ConfigError(f"{where}: method {spec.name!r} ({spec.kind}) has no adapter to configure")
    return check_mapping(settings, overrides, f"{where}.")


def persona_in_prompt(name: str, config: ExperimentConfig) -> bool:
    spec = get_method(name)
    return config.data.persona_in_prompt if spec.persona is None else spec.persona
