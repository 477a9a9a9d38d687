"""Building a method on a base model (one builder per kind), and loading a saved one.

`build_method` initialises the trainable weights from ``config.train.seed`` (inside a forked RNG, so the
caller's random state is untouched) and modifies the base model in place (adapters inserted, or every
weight unfrozen for full fine-tuning). `load_trained` rebuilds the method a folder was saved from, with
the saved settings, and loads its weights: one call for every method.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cuma.adapter.peft_model import base_identity
from cuma.config import ExperimentConfig, PrefixConfig
from cuma.errors import ConfigError
from cuma.methods.prepared import PreparedModel
from cuma.methods.registry import MethodSpec, check_methods, get_method, method_overrides, persona_in_prompt
from cuma.sidecar import read_sidecar

logger = logging.getLogger("cuma.methods")

Builder = Callable[[MethodSpec, nn.Module, dict[str, Any], bool], PreparedModel]


def build_method(
    name: str, base_model: nn.Module, config: ExperimentConfig, encoder: Any = None
) -> PreparedModel:
    """Wrap ``base_model`` for method ``name``.

    ``encoder`` is the demographic encoder (`cuma.encoder.DemographicEncoder` or the quick run's stand-in);
    methods that route on the profile need it, and their adapter records it (``adapter_settings()``).
    """
    spec = get_method(name)
    check_methods([name], config)
    if spec.kind == "reference":
        raise ValueError(f"method {name!r} is a non-LLM reference point; the evaluation code runs it")
    overrides = method_overrides(spec, config.adapter_overrides.get(name, {}))
    settings = _settings(spec, overrides, encoder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        return BUILDERS[spec.kind](spec, base_model, settings, persona_in_prompt(name, config))


def load_trained(
    directory: str | Path, base_model: nn.Module | None = None, *, is_trainable: bool = False
) -> PreparedModel:
    """The method saved in ``directory`` (by `PreparedModel.save`, i.e. `cuma train` or `cuma compare`),
    rebuilt on ``base_model`` (default: the saved base model, by name) with its trained weights."""
    directory = Path(directory)
    record = read_sidecar(directory)
    method = record.get("method")
    if method is None:
        raise ValueError(
            f"{directory / 'cuma.json'} names no method: the folder was not saved by cuma.methods"
        )
    spec = get_method(method["name"])
    if base_model is None:
        from cuma.models import load_base_model

        base_model, _ = load_base_model(record["base_model"]["name_or_path"])
    prepared = BUILDERS[spec.kind](spec, base_model, dict(method["settings"]), method["persona_in_prompt"])
    prepared.load_weights(directory)
    prepared.started_from = str(directory)
    prepared.train(is_trainable)
    if not is_trainable:
        prepared.requires_grad_(False)
    return prepared


def _settings(spec: MethodSpec, overrides: dict[str, Any], encoder: Any) -> dict[str, Any]:
    """The full build settings of a method: a CuMAConfig's fields, a PrefixConfig's, or none."""
    if spec.kind == "prefix":
        return dataclasses.asdict(PrefixConfig(**overrides))
    if spec.kind != "adapter":
        return {}
    from cuma.adapter import CuMAConfig

    config = CuMAConfig.from_preset(spec.preset, **overrides)
    if config.uses_demographics:
        if encoder is None:
            raise ValueError(f"method {spec.name!r} routes on the profile embedding: pass the encoder")
        given = overrides.get("demographic_input_dim", encoder.dim)
        if given != encoder.dim:
            raise ConfigError(
                f"adapter_overrides.{spec.name}.demographic_input_dim={given} does not match the encoder's "
                f"output size {encoder.dim}"
            )
        config = CuMAConfig.from_preset(spec.preset, **{**overrides, **encoder.adapter_settings()})
    return config.settings()


def _build_prompt(
    spec: MethodSpec, base: nn.Module, settings: dict[str, Any], persona: bool
) -> PreparedModel:
    base.requires_grad_(False)
    return PreparedModel(spec, base, base_identity(base), persona)


def _build_adapter(
    spec: MethodSpec, base: nn.Module, settings: dict[str, Any], persona: bool
) -> PreparedModel:
    from cuma.adapter import CuMAConfig, get_cuma_model

    identity = base_identity(base)
    model = get_cuma_model(base, CuMAConfig(**settings))
    return PreparedModel(spec, model, identity, persona, settings)


def _build_prefix(
    spec: MethodSpec, base: nn.Module, settings: dict[str, Any], persona: bool
) -> PreparedModel:
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    identity = base_identity(base)
    model = get_peft_model(base, PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, **settings))
    return PreparedModel(spec, model, identity, persona, settings)


def _build_full(spec: MethodSpec, base: nn.Module, settings: dict[str, Any], persona: bool) -> PreparedModel:
    """Every base weight trains, in float32: AdamW's small updates round away in bf16 or fp16 weights, so a
    half-precision base is upcast once (the float32 master weights; ``train.precision=bf16`` still
    computes in bf16 under autocast), and the saved model is float32."""
    low = sorted({str(p.dtype) for p in base.parameters() if p.dtype in (torch.bfloat16, torch.float16)})
    if low:
        logger.warning(
            "full fine-tuning: upcasting the %s base model to float32 master weights (%s parameters)",
            ", ".join(low),
            f"{sum(p.numel() for p in base.parameters()):,}",
        )
        base.float()
    base.requires_grad_(True)
    return PreparedModel(spec, base, base_identity(base), persona)


BUILDERS: dict[str, Builder] = {
    "prompt": _build_prompt,
    "adapter": _build_adapter,
    "prefix": _build_prefix,
    "full": _build_full,
}
"""Method kind -> its builder ``(spec, base_model, settings, persona_in_prompt) -> PreparedModel``."""
