"""One registry of methods: every baseline and variant is a name in the config, not a script.

Public API::

    METHODS: dict[str, MethodSpec]                     # name -> what it is and what it sees
    get_method(name) -> MethodSpec                     # ValueError listing the known names
    check_methods(names) -> None                       # validate a config's list before any work
    method_overrides(spec, overrides) -> dict          # adapter_overrides.<method>, checked and typed
    persona_in_prompt(name, config) -> bool            # does this method's prompt carry the profile?
    build_method(name, base_model, config, encoder_dim=None) -> PreparedModel
    load_trained(directory, base_model, config) -> PreparedModel   # what PreparedModel.save wrote

A ``PreparedModel`` is an ``nn.Module`` with one call for every method,
``model(input_ids, attention_mask, demographic_embeds=None)`` -> output with ``.logits`` and
``.aux_loss`` (a 0 tensor when the method has no router), plus ``trainable``, ``parameter_groups()``,
``parameter_report()``, ``save(dir)`` and, for routed adapters, ``record_routing()``.

What each method sees (the paper's ablations hinge on it):

* ``base`` never sees the profile: the generic-assistant prompt ("vanilla" in the paper).
* ``persona`` and ``few-shot`` always see it in the system prompt; few-shot adds k answered
  questions from training respondents of the same main group (``cuma.evaluation.few_shot``).
* Every trained method follows ``data.persona_in_prompt`` (default True, the paper's setting), so the
  dense and mixture baselines get exactly the demographic text CuMA gets. The reference scripts ran
  HydraLoRA/MixLoRA without it (reference notes 6.1 item 20); here they are compared fairly.
* ``cuma``, ``cuma-soft`` and ``demographic-only`` also route on the encoder embedding of the profile.
* ``no-demographic`` removes the routing input for real (the router reads the hidden state only) and
  keeps the persona prompt, so against ``cuma`` it isolates the routing signal. The paper's released
  "w/o demographic" run instead kept the routing and dropped the persona; reproduce that with
  ``cuma`` and ``data.persona_in_prompt=false``.
* ``majority``, ``cell-majority`` and ``logistic`` are the non-LLM reference points; they are listed
  here so that one registry validates a config, and are run by the evaluation code, not built here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.utils import ModelOutput

from cuma.config import ExperimentConfig, PrefixConfig
from cuma.errors import ConfigError
from cuma.fieldcheck import check_mapping

if TYPE_CHECKING:
    from cuma.adapter.report import ParameterReport

Kind = Literal["prompt", "adapter", "full", "prefix", "reference"]

WEIGHTS_FILE = "trainable.safetensors"
METHOD_FILE = "method.json"


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
]
METHODS: dict[str, MethodSpec] = {spec.name: spec for spec in _SPECS}


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name]


def check_methods(names: Iterable[str], config: ExperimentConfig | None = None) -> None:
    """Fail before any work on an unknown method, or on adapter overrides that no build would accept."""
    for name in names:
        get_method(name)
    if config is not None:
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


@dataclass
class MethodOutput(ModelOutput):
    """What every method returns. A declared field, not an attribute added to the base model's output,
    so ``aux_loss`` survives accelerate's mixed-precision output conversion."""

    logits: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None


class PreparedModel(nn.Module):
    """A base model made ready for one method, behind one call signature.

    Attributes:
        spec: the method.
        model: the wrapped module (the base model, a CuMAModel or a PEFT model).
        adapter_config: the CuMAConfig of adapter methods, else None.
        persona_in_prompt: whether prompts for this method carry the profile (see the module docstring).
        settings: method-specific build settings (prefix-tuning fields), saved with the weights.
        base_identity: what the base model is, so a checkpoint can refuse another base.
    """

    def __init__(
        self,
        spec: MethodSpec,
        model: nn.Module,
        base_identity: dict[str, Any],
        persona_in_prompt: bool,
        adapter_config: Any = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.model = model
        self.base_identity = base_identity
        self.persona_in_prompt = persona_in_prompt
        self.adapter_config = adapter_config
        self.settings = settings or {}

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def trainable(self) -> bool:
        return self.spec.trainable

    @property
    def uses_demographics(self) -> bool:
        return self.adapter_config is not None and self.adapter_config.uses_demographics

    @property
    def has_routing(self) -> bool:
        return self.adapter_config is not None and self.adapter_config.has_router

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        demographic_embeds: torch.Tensor | None = None,
    ) -> MethodOutput:
        if self.spec.kind == "adapter":
            out = self.model(
                input_ids,
                attention_mask=attention_mask,
                demographic_embeds=demographic_embeds,
                use_cache=False,
            )
        elif self.spec.kind == "prefix":  # PEFT feeds the prefix through the cache; leave it alone
            out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        else:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        aux_loss = getattr(out, "aux_loss", None)
        if aux_loss is None:
            aux_loss = out.logits.new_zeros((), dtype=torch.float32)
        return MethodOutput(logits=out.logits, aux_loss=aux_loss)

    @contextmanager
    def record_routing(self) -> Iterator[Any]:
        """The adapter's routing recorder; only methods with a router have one."""
        if not self.has_routing:
            raise ValueError(f"method {self.name!r} has no router to record")
        with self.model.record_routing() as rec:
            yield rec

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {name: p for name, p in self.model.named_parameters() if p.requires_grad}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by learning-rate group: experts/routers/projection, or "weights"."""
        if not self.trainable:
            return {}
        if self.spec.kind == "adapter":
            groups = self.model.parameter_groups()
            return {key: [p for p in params if p.requires_grad] for key, params in groups.items() if params}
        return {"weights": list(self.trainable_parameters().values())}

    def parameter_report(self) -> ParameterReport:
        """A ``cuma.adapter.ParameterReport``: trainable counts per component and percent of the base."""
        from cuma.adapter import ParameterReport

        if self.spec.kind == "adapter":
            return self.model.parameter_report()
        groups = {
            "prefix" if self.spec.kind == "prefix" else "weights": self.parameter_groups().get("weights", [])
        }
        return ParameterReport.from_groups(groups, self.base_identity["num_parameters"])

    def identity(self) -> dict[str, Any]:
        """Everything that must match for saved weights to belong to this model."""
        identity = {
            "method": self.name,
            "base": self.base_identity,
            "adapter_config": None if self.adapter_config is None else self.adapter_config.to_dict(),
            "settings": self.settings,
            "persona_in_prompt": self.persona_in_prompt,
        }
        return json.loads(json.dumps(identity))  # the form it takes on disk (tuples become lists)

    def save(self, directory: str | Path) -> None:
        """Write the trainable weights (safetensors) and ``method.json``; ``load_trained`` reads them."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {name: p.detach().contiguous().cpu() for name, p in self.trainable_parameters().items()}
        save_file(tensors, str(directory / WEIGHTS_FILE))
        (directory / METHOD_FILE).write_text(json.dumps(self.identity(), indent=2, sort_keys=True))

    def load_weights(self, directory: str | Path) -> None:
        """Load weights saved by ``save`` after checking they belong to this method and base model."""
        directory = Path(directory)
        check_identity(directory, self.identity())
        tensors = load_file(str(directory / WEIGHTS_FILE))
        params = self.trainable_parameters()
        missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
        if missing or unexpected:
            raise ValueError(
                f"{directory / WEIGHTS_FILE}: parameter names do not match method {self.name!r} "
                f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
            )
        with torch.no_grad():
            for name, param in params.items():
                if tensors[name].shape != param.shape:
                    raise ValueError(
                        f"{directory / WEIGHTS_FILE}: {name} has shape {tuple(tensors[name].shape)}, "
                        f"the model expects {tuple(param.shape)}"
                    )
                param.copy_(tensors[name])


def check_identity(directory: Path, expected: dict[str, Any]) -> None:
    """Refuse weights written for another method, base model or adapter configuration."""
    path = directory / METHOD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a directory written by PreparedModel.save")
    saved = json.loads(path.read_text())
    for key in ("method", "base", "adapter_config", "settings", "persona_in_prompt"):
        if saved.get(key) != expected[key]:
            raise ValueError(
                f"{path}: written for {key} {saved.get(key)!r}, but this run uses {expected[key]!r}; "
                "use a fresh output directory or the matching config"
            )


def base_identity(base_model: nn.Module) -> dict[str, Any]:
    cfg = base_model.config
    return {
        "name_or_path": str(getattr(cfg, "name_or_path", "") or getattr(base_model, "name_or_path", "")),
        "model_type": cfg.model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_parameters": sum(p.numel() for p in base_model.parameters()),
    }


def build_method(
    name: str, base_model: nn.Module, config: ExperimentConfig, encoder_dim: int | None = None
) -> PreparedModel:
    """Wrap ``base_model`` for method ``name``; trainable weights are initialised from ``config.train.seed``.

    ``encoder_dim`` is the demographic encoder's output size, required by methods that route on it.
    The base model is modified in place (adapters inserted, or every weight unfrozen for "full").
    """
    spec = get_method(name)
    check_methods([name], config)
    if spec.kind == "reference":
        raise ValueError(f"method {name!r} is a non-LLM reference point; the evaluation code runs it")
    overrides = method_overrides(spec, config.adapter_overrides.get(name, {}))
    identity = base_identity(base_model)
    adapter_config, settings = None, None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        if spec.kind == "adapter":
            adapter_config = _adapter_config(spec, overrides, encoder_dim)
            from cuma.adapter import get_cuma_model

            model = get_cuma_model(base_model, adapter_config)
        elif spec.kind == "prefix":
            settings = dataclasses.asdict(PrefixConfig(**overrides))
            from peft import PrefixTuningConfig, TaskType, get_peft_model

            model = get_peft_model(base_model, PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, **settings))
        else:
            base_model.requires_grad_(spec.kind == "full")
            model = base_model
    return PreparedModel(spec, model, identity, persona_in_prompt(name, config), adapter_config, settings)


def load_trained(directory: str | Path, base_model: nn.Module, config: ExperimentConfig) -> PreparedModel:
    """Rebuild the method saved in ``directory`` on ``base_model`` and load its trained weights."""
    directory = Path(directory)
    path = directory / METHOD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a directory written by PreparedModel.save")
    saved = json.loads(path.read_text())
    spec = get_method(saved["method"])
    overrides = dict(saved["adapter_config"] or saved["settings"] or {})
    encoder_dim = overrides.get("demographic_input_dim")
    config = ExperimentConfig.from_dict({**config.to_dict(), "adapter_overrides": {spec.name: overrides}})
    prepared = build_method(spec.name, base_model, config, encoder_dim)
    prepared.load_weights(directory)
    return prepared


def _adapter_config(spec: MethodSpec, overrides: dict[str, Any], encoder_dim: int | None) -> Any:
    from cuma.adapter import CuMAConfig

    adapter_config = CuMAConfig.from_preset(spec.preset, **overrides)
    if not adapter_config.uses_demographics:
        return adapter_config
    if encoder_dim is None:
        raise ValueError(f"method {spec.name!r} routes on the profile embedding: pass encoder_dim")
    given = overrides.get("demographic_input_dim", encoder_dim)
    if given != encoder_dim:
        raise ValueError(
            f"adapter_overrides.{spec.name}.demographic_input_dim={given} does not match the encoder's "
            f"output size {encoder_dim}"
        )
    return CuMAConfig.from_preset(spec.preset, **{**overrides, "demographic_input_dim": encoder_dim})
