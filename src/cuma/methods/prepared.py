"""`PreparedModel`: a base model made ready for one method, behind one call signature, saved one way.

Every method is called as ``model(input_ids, attention_mask, demographic_embeds=None, position_ids=None,
logits_to_keep=0)`` and returns `MethodOutput` (``logits`` and ``aux_loss``, 0 without a router), so the
trainer and the scorer never branch on the method.

Saved folders have one layout for every method: the model's own Hugging Face files (a PEFT adapter
folder for adapters and prefix tuning, a transformers model folder for full fine-tuning) plus the
``cuma.json`` sidecar (`cuma.sidecar`) naming the method, its settings and the base model, with the
sha256 of every weights file. `cuma.methods.load_trained` reads any of them; PEFT and transformers read
them too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import get_peft_model_state_dict
from safetensors.torch import load_file
from torch import nn
from transformers.utils import ModelOutput

from cuma.adapter import ParameterReport
from cuma.adapter.peft_model import load_adapter_tensors, tensor_problems
from cuma.methods.registry import MethodSpec
from cuma.sidecar import read_sidecar, write_sidecar

PEFT_WEIGHTS = "adapter_model.safetensors"


@dataclass
class MethodOutput(ModelOutput):
    """What every method returns. A declared field, not an attribute added to the base model's output,
    so ``aux_loss`` survives accelerate's mixed-precision output conversion."""

    logits: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None


class PreparedModel(nn.Module):
    """A base model made ready for one method.

    Attributes:
        spec: the method.
        model: the wrapped module: the base model (prompt methods, full fine-tuning) or a PEFT model.
        base_identity: what the base model is (`base_identity`), so saved weights can refuse another base.
        persona_in_prompt: whether prompts for this method carry the profile (`cuma.methods.registry`).
        settings: the method's build settings (CuMAConfig fields, PrefixConfig fields, or empty), saved.
        started_from: the folder its weights were loaded from (`cuma.methods.load_trained`), else None.
    """

    def __init__(
        self,
        spec: MethodSpec,
        model: nn.Module,
        base_identity: dict[str, Any],
        persona_in_prompt: bool,
        settings: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.model = model
        self.base_identity = base_identity
        self.persona_in_prompt = persona_in_prompt
        self.settings = settings or {}
        self.started_from: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def trainable(self) -> bool:
        return self.spec.trainable

    @property
    def adapter_config(self) -> Any:
        """The `CuMAConfig` of adapter methods, else None."""
        return self.model.peft_config["default"] if self.spec.kind == "adapter" else None

    @property
    def _no_split_modules(self) -> list[str]:
        """The base model's decoder-layer classes, which accelerate's FSDP ``TRANSFORMER_BASED_WRAP`` reads
        from the prepared module: without them the whole model is one FSDP unit, gathered whole for
        every forward."""
        return list(getattr(self.model, "_no_split_modules", None) or [])

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
        position_ids: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
    ) -> MethodOutput:
        """Logits (at the ``logits_to_keep`` positions; 0 keeps all) and the aux loss of one batch."""
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids,  # PEFT shifts them past a prefix itself
            "logits_to_keep": logits_to_keep,
        }
        if self.spec.kind != "prefix":  # prefix tuning feeds its prefix through the cache
            kwargs["use_cache"] = False
        if self.spec.kind == "adapter":
            kwargs["demographic_embeds"] = demographic_embeds
        out = self.model(**kwargs)
        aux_loss = getattr(out, "aux_loss", None)
        if aux_loss is None:
            aux_loss = out.logits.new_zeros((), dtype=torch.float32)
        return MethodOutput(logits=out.logits, aux_loss=aux_loss)

    @contextmanager
    def reference(self) -> Iterator[None]:
        """Run as the reference policy of preference training: the same weights with the adapters
        disabled (PEFT's ``disable_adapter``), so no second model copy is needed."""
        if self.spec.kind not in ("adapter", "prefix"):
            raise ValueError(
                f"method {self.name!r} ({self.spec.kind}) has no adapter to disable for a reference model; "
                "use dpo.reference=precomputed"
            )
        with self.model.disable_adapter():
            yield

    @contextmanager
    def record_routing(self) -> Iterator[Any]:
        """The adapter's routing recorder; only methods with a router have one."""
        if not self.has_routing:
            raise ValueError(f"method {self.name!r} has no router to record")
        with self.model.record_routing() as rec:
            yield rec

    def enable_gradient_checkpointing(self) -> None:
        """Non-reentrant activation checkpointing of the base model's decoder blocks
        (``train.gradient_checkpointing``); a CuMA adapter re-enters each call's routing in the recompute
        (cuma/adapter/model.py). Non-reentrant checkpointing replays the RNG, so dropout masks repeat and
        the gradients are the ones without it."""
        problem = self.spec.gradient_checkpointing_problem()
        if problem is not None:
            raise ValueError(problem)
        self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

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
        """Trainable counts per component and percent of the base model."""
        if self.spec.kind == "adapter":
            return self.model.parameter_report()
        weights = self.parameter_groups().get("weights", [])
        name = "prefix" if self.spec.kind == "prefix" else "weights"
        return ParameterReport.from_groups({name: weights}, self.base_identity["num_parameters"])

    # ------------------------------------------------------------------ saving
    def method_record(self) -> dict[str, Any]:
        """What the sidecar records about the method; saved weights must match it to be loaded here."""
        return {
            "name": self.name,
            "kind": self.spec.kind,
            "persona_in_prompt": self.persona_in_prompt,
            "settings": _plain(self.settings),
        }

    def save(self, directory: str | Path, state_dict: Mapping[str, torch.Tensor] | None = None) -> Path:
        """Write the method's folder (see the module docstring); `cuma.methods.load_trained` reads it.

        ``state_dict`` (keys as in ``self.state_dict()``) holds at least every tensor the method saves,
        gathered from every process by the trainer (`cuma.train.checkpoint.gathered_weights`: everything but
        the frozen base): under FSDP or ZeRO-3 this process's own parameters are only shards, so the
        gathered tensors are written instead; one that lacks a tensor the method saves is refused. PEFT's
        prefix tuning reads its prompt encoder itself whatever it is given (whole on every process under
        DDP).
        """
        if not self.trainable:
            raise ValueError(f"method {self.name!r} has no trained weights to save")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        given = {} if state_dict is None else {"state_dict": self._complete(_inner_state(state_dict))}
        if self.spec.kind == "full":
            self.model.save_pretrained(directory, **given)
            files = sorted(p.name for p in directory.glob("*.safetensors"))
        else:  # a PEFT model; it never adapts the embeddings here, so it need not look the base up on the hub
            self.model.save_pretrained(directory, save_embedding_layers=False, **given)
            files = [PEFT_WEIGHTS]
        write_sidecar(directory, {"base_model": self.base_identity, "method": self.method_record()}, files)
        return directory

    def _complete(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``state`` (wrapped-model keys), checked to hold every tensor this method's save writes: the
        trainer gathers no frozen weight, and a save must fail rather than leave one out."""
        if self.spec.kind == "full":
            wanted, present = set(self.model.state_dict()), set(state)
        else:
            wanted, present = (
                set(get_peft_model_state_dict(self.model, state_dict=s, save_embedding_layers=False))
                for s in (self.model.state_dict(), state)
            )
        missing = sorted(wanted - present)
        if missing:
            raise ValueError(
                f"method {self.name!r}: the state dict to save lacks {len(missing)} of its tensors, e.g. "
                f"{missing[:4]}"
            )
        return state

    def load_weights(self, directory: str | Path) -> None:
        """Load weights that ``save`` wrote, after checking their checksums and that they belong to this
        method, these settings and this base model."""
        directory = Path(directory)
        record = read_sidecar(directory)
        where = directory / "cuma.json"
        expected = {"base_model": self.base_identity, "method": self.method_record()}
        diffs = _differences({key: record.get(key) for key in expected}, _plain(expected))
        if diffs:
            listed = "; ".join(f"{key}: saved {a!r}, this run {b!r}" for key, a, b in diffs[:8])
            raise ValueError(
                f"{where}: written for another model ({listed}); use a fresh output directory or the "
                "matching config"
            )
        if self.spec.kind == "full":
            _load_full(self.model, directory, record["files"])
        else:
            tensors = load_file(directory / PEFT_WEIGHTS)
            load_adapter_tensors(self.model, tensors, str(directory / PEFT_WEIGHTS))


def _inner_state(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A `PreparedModel` state dict with the wrapped model's keys (``model.`` removed), as its
    ``save_pretrained`` expects them."""
    prefix = "model."
    outside = sorted(key for key in state_dict if not key.startswith(prefix))
    if outside:
        raise ValueError(f"state dict keys outside the wrapped model: {outside[:6]}")
    return {key[len(prefix) :]: value for key, value in state_dict.items()}


def _load_full(model: nn.Module, directory: Path, files: dict[str, str]) -> None:
    """Every weight of a fully fine-tuned model; tied weights (saved once) may be absent."""
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        tensors.update(load_file(directory / name))
    state = model.state_dict()
    saved_storage = {state[k].data_ptr() for k in tensors if k in state}
    tied = frozenset(k for k in set(state) - set(tensors) if state[k].data_ptr() in saved_storage)
    problems = tensor_problems({k: v.shape for k, v in state.items()}, tensors, ignore_missing=tied)
    if problems:
        raise ValueError(f"{directory}: the weights do not fit this model; " + "; ".join(problems))
    model.load_state_dict(tensors, strict=False)


def _differences(saved: Any, now: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, saved, now) for every leaf where two JSON-like records differ."""
    if isinstance(saved, dict) and isinstance(now, dict):
        keys = sorted(set(saved) | set(now))
        return [d for k in keys for d in _differences(saved.get(k), now.get(k), f"{prefix}{k}.")]
    return [] if saved == now else [(prefix.rstrip("."), saved, now)]


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples become lists), so a saved record compares equal to a fresh one."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
