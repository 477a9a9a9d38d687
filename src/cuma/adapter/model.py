"""`CuMAModel`: a frozen causal LM with mixture-of-LoRA layers, per-call demographic routing and save/load.

Conditioning is stateless: each forward/generate builds a `RoutingState` (projected demographic
embeddings, padding mask, per-call router cache, aux losses) and hands it to the adapted layers through
forward pre-hooks that are removed in a ``finally``, in the style of PEFT's ``adapter_names``.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from cuma.adapter.config import CuMAConfig
from cuma.adapter.layer import MixtureLoRALinear
from cuma.adapter.projection import DemographicProjection
from cuma.adapter.report import ParameterReport
from cuma.adapter.router import Router, RoutingState

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


@dataclass
class RoutingRecord:
    """Routing weights recorded by ``CuMAModel.record_routing``.

    ``calls`` holds one dict per forward/generate call: layer name -> CPU float tensor [B, S, N]
    (a generate call's steps are concatenated along S).
    """

    calls: list[dict[str, torch.Tensor]] = field(default_factory=list)

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """Layer name -> [B, S, N] over all recorded calls, concatenated along the batch."""
        if not self.calls:
            raise ValueError("no CuMAModel call was recorded inside record_routing()")
        shapes = {tuple(t.shape[1:]) for call in self.calls for t in call.values()}
        if len(shapes) > 1:
            raise ValueError(f"recorded calls have different sequence lengths {sorted(shapes)}; read .calls")
        return {name: torch.cat([call[name] for call in self.calls]) for name in self.calls[0]}


class CuMAModel(nn.Module):
    """A frozen causal LM whose targeted linears carry a routed mixture of LoRA experts."""

    def __init__(self, base_model: nn.Module, config: CuMAConfig) -> None:
        super().__init__()
        if any(isinstance(m, MixtureLoRALinear) for m in base_model.modules()):
            raise ValueError("base_model already carries CuMA layers; pass a fresh base model")
        base_model.requires_grad_(False)
        self.base_parameter_count = sum(p.numel() for p in base_model.parameters())
        self.base_model = base_model
        self.config = config
        self.routers = nn.ModuleDict()
        self.layers: dict[str, MixtureLoRALinear] = {}
        self._inject(base_model, config)
        self.projection = DemographicProjection(config) if config.uses_demographics else None
        if self.projection is not None:
            self.projection.to(self._device)
        self._recorder: RoutingRecord | None = None
        self._adapter_disabled = False

    def __getattr__(self, name: str) -> Any:
        # Like PEFT: anything CuMAModel does not define (device, generation_config, ...) is the base model's.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)

    @property
    def _device(self) -> torch.device:
        return self.base_model.get_input_embeddings().weight.device

    def _inject(self, base_model: nn.Module, config: CuMAConfig) -> None:
        modules = dict(base_model.named_modules())
        matched = {t: [n for n in modules if n == t or n.endswith("." + t)] for t in config.target_modules}
        linear_names = sorted({n.rsplit(".", 1)[-1] for n, m in modules.items() if isinstance(m, nn.Linear)})
        model_type = type(base_model).__name__
        for target, names in matched.items():
            if not names:
                raise ValueError(
                    f"CuMAConfig.target_modules entry {target!r} matches no module of {model_type}; "
                    f"its nn.Linear names are {linear_names}"
                )
            for name in names:
                if not isinstance(modules[name], nn.Linear):
                    raise ValueError(
                        f"CuMAConfig.target_modules entry {target!r} matches {name}, a "
                        f"{type(modules[name]).__name__}, not an nn.Linear"
                    )
        for name in sorted({n for names in matched.values() for n in names}, key=list(modules).index):
            parent_name, _, child = name.rpartition(".")
            linear = modules[name]
            router_key = self._router_for(parent_name, child, linear, config) if config.has_router else None
            layer = MixtureLoRALinear(linear, config, name, router_key)
            setattr(modules[parent_name] if parent_name else base_model, child, layer)
            self.layers[name] = layer

    def _router_for(self, parent: str, child: str, linear: nn.Linear, config: CuMAConfig) -> str:
        group = next((g for g in config.router_sharing if child in g), (child,))
        key = f"{parent}.{'+'.join(group)}".replace(".", "-")
        if key not in self.routers:
            self.routers[key] = Router(config, linear.in_features).to(linear.weight.device)
            return key
        shared_proj = self.routers[key].hidden_proj
        if shared_proj is not None and shared_proj.in_features != linear.in_features:
            raise ValueError(
                f"{parent}.{child} has in_features={linear.in_features} but shares router {key} with a layer "
                f"of in_features={shared_proj.in_features}; remove it from CuMAConfig.router_sharing"
            )
        return key

    # ------------------------------------------------------------------ calls
    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        demographic_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """The base model's output plus ``aux_loss``: the weighted router losses, summed (0 if no router)."""
        return_dict = kwargs.get("return_dict")
        if not (self.base_model.config.return_dict if return_dict is None else return_dict):
            raise TypeError(
                "CuMAModel.forward returns the base model's ModelOutput with an aux_loss added; "
                "drop return_dict=False (and keep config.return_dict=True)"
            )
        state = self._state(input_ids, attention_mask, demographic_embeds, kwargs, expand=1, compute_aux=True)
        with self._routing(state):
            output = self.base_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        losses = state.aux_losses if state is not None else []
        output["aux_loss"] = torch.stack(losses).sum() if losses else torch.zeros((), device=self._device)
        return output

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        demographic_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """``base_model.generate`` routed with one embedding per input row.

        Transformers expands each row ``max(num_beams, num_return_sequences)`` times with
        repeat_interleave; the embeddings are expanded the same way here.
        """
        generation_config = kwargs.get("generation_config") or self.base_model.generation_config
        beams = kwargs.get("num_beams") or generation_config.num_beams or 1
        returns = kwargs.get("num_return_sequences") or generation_config.num_return_sequences or 1
        state = self._state(
            input_ids,
            attention_mask,
            demographic_embeds,
            kwargs,
            expand=max(beams, returns),
            compute_aux=False,
        )
        with self._routing(state):
            return self.base_model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    def _state(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        demographic_embeds: torch.Tensor | None,
        kwargs: dict[str, Any],
        expand: int,
        compute_aux: bool,
    ) -> RoutingState | None:
        if demographic_embeds is not None:
            _check_rows(
                demographic_embeds, input_ids if input_ids is not None else kwargs.get("inputs_embeds")
            )
        if self._adapter_disabled or not self.config.has_router:
            return None
        demographic = None
        if self.projection is not None:
            if demographic_embeds is None:
                raise ValueError(
                    f"this CuMA adapter routes on demographics (router_inputs={self.config.router_inputs}); "
                    f"pass demographic_embeds of shape [batch, {self.config.demographic_input_dim}]"
                )
            demographic = self.projection(demographic_embeds.to(self._device)).repeat_interleave(
                expand, dim=0
            )
        return RoutingState(
            routers=self.routers,
            config=self.config,
            demographic=demographic,
            attention_mask=attention_mask,
            compute_aux=compute_aux,
            record={} if self._recorder is not None else None,
        )

    @contextmanager
    def _routing(self, state: RoutingState | None) -> Iterator[None]:
        """Hand ``state`` to every adapted layer for the duration of one call, and nothing after it."""
        if state is None:
            yield
            return
        hook = partial(_inject_routing, state=state)
        handles = [layer.register_forward_pre_hook(hook, with_kwargs=True) for layer in self.layers.values()]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
        if self._recorder is not None:
            self._recorder.calls.append(
                {name: torch.cat(steps, dim=1) for name, steps in state.record.items()}
            )

    @contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Run the bare base model (e.g. DPO reference log-probs without a second model copy)."""
        previous = self._adapter_disabled
        self._adapter_disabled = True
        for layer in self.layers.values():
            layer.disabled = True
        try:
            yield
        finally:
            self._adapter_disabled = previous
            for layer in self.layers.values():
                layer.disabled = previous

    @contextmanager
    def record_routing(self) -> Iterator[RoutingRecord]:
        """Record the routing weights of every call inside the block (see `RoutingRecord`)."""
        if self._recorder is not None:
            raise RuntimeError("record_routing() blocks cannot be nested")
        self._recorder = RoutingRecord()
        try:
            yield self._recorder
        finally:
            self._recorder = None

    # ------------------------------------------------------------- parameters
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by component, for separate learning rates."""
        return {
            "experts": [p for layer in self.layers.values() for p in (layer.lora_A, layer.lora_B)],
            "routers": list(self.routers.parameters()),
            "projection": [] if self.projection is None else list(self.projection.parameters()),
        }

    def parameter_report(self) -> ParameterReport:
        return ParameterReport.from_groups(self.parameter_groups(), self.base_parameter_count)

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Trainable tensors: ``experts.<layer>.lora_A``/``lora_B``, ``routers.<key>.*``, ``projection.*``."""
        tensors = {}
        for name, layer in self.layers.items():
            tensors[f"experts.{name}.lora_A"] = layer.lora_A
            tensors[f"experts.{name}.lora_B"] = layer.lora_B
        tensors.update({f"routers.{k}": v for k, v in self.routers.state_dict(keep_vars=True).items()})
        if self.projection is not None:
            tensors.update(
                {f"projection.{k}": v for k, v in self.projection.state_dict(keep_vars=True).items()}
            )
        return tensors

    def load_adapter_state_dict(self, tensors: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Copy ``tensors`` in, after checking that names and shapes match exactly; lists every problem."""
        own = self.adapter_state_dict()
        missing = sorted(set(own) - set(tensors))
        unexpected = sorted(set(tensors) - set(own))
        misshaped = [
            f"{k}: {tuple(tensors[k].shape)} (expected {tuple(own[k].shape)})"
            for k in sorted(set(own) & set(tensors))
            if tensors[k].shape != own[k].shape
        ]
        problems = []
        if missing:
            problems.append(f"missing: {missing}")
        if unexpected:
            problems.append(f"unexpected: {unexpected}")
        if misshaped:
            problems.append(f"mis-shaped: {misshaped}")
        if problems:
            raise ValueError(f"{source} does not fit this CuMA model; " + "; ".join(problems))
        with torch.no_grad():
            for name, param in own.items():
                param.copy_(tensors[name])

    # ------------------------------------------------------------- save/load
    def save_pretrained(self, directory: str | Path) -> None:
        """Write adapter_config.json and adapter_model.safetensors (adapter tensors only) to ``directory``."""
        from cuma import __version__

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.adapter_state_dict().items()}
        save_file(tensors, directory / WEIGHTS_NAME, metadata={"format": "pt"})
        base_config = self.base_model.config
        meta = {
            "cuma_version": __version__,
            "base_model_name_or_path": base_config.name_or_path,
            "base_model_type": base_config.model_type,
            "base_hidden_size": base_config.hidden_size,
            "weights_sha256": _sha256(directory / WEIGHTS_NAME),
            "config": self.config.to_dict(),
        }
        (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, base_model: nn.Module, directory: str | Path) -> CuMAModel:
        """Rebuild a saved adapter on ``base_model``, validating the base model and every tensor."""
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"no {path.name} in {directory}; expected a CuMAModel.save_pretrained folder"
                )
        try:
            meta = json.loads(config_path.read_text())
            config = CuMAConfig.from_dict(meta["config"])
            saved = (meta["base_model_name_or_path"], meta["base_model_type"], meta["base_hidden_size"])
            checksum = meta["weights_sha256"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{config_path} is not a valid CuMA adapter config: {err!r}") from err
        base_config = base_model.config
        current = (base_config.name_or_path, base_config.model_type, base_config.hidden_size)
        if saved[1:] != current[1:]:
            raise ValueError(
                f"{config_path} was saved for base model {saved[0]!r} (model_type={saved[1]!r}, "
                f"hidden_size={saved[2]}), but the given base model is {current[0]!r} "
                f"(model_type={current[1]!r}, hidden_size={current[2]})"
            )
        if saved[0] != current[0]:
            warnings.warn(
                f"{config_path} was saved for base model {saved[0]!r}; loading it on {current[0]!r}",
                stacklevel=2,
            )
        if _sha256(weights_path) != checksum:
            raise ValueError(
                f"{weights_path} does not match the sha256 recorded in {config_path}: the file was altered"
            )
        try:
            tensors = load_file(weights_path)
        except SafetensorError as err:
            raise ValueError(f"{weights_path} is not a readable safetensors file: {err}") from err
        model = cls(base_model, config)
        model.load_adapter_state_dict(tensors, source=str(weights_path))
        return model


def get_cuma_model(base_model: nn.Module, config: CuMAConfig) -> CuMAModel:
    """Freeze ``base_model`` and add the adapter that ``config`` describes (modifies it in place)."""
    return CuMAModel(base_model, config)


def _check_rows(demographic_embeds: torch.Tensor, inputs: torch.Tensor | None) -> None:
    """One embedding row per input row, whether or not the router reads them (the projection checks
    the width when it does), so a misaligned batch fails for every method alike."""
    if not isinstance(demographic_embeds, torch.Tensor):
        raise TypeError(f"demographic_embeds must be a tensor, got {type(demographic_embeds).__name__}")
    if inputs is not None and (
        demographic_embeds.dim() == 0 or demographic_embeds.shape[0] != inputs.shape[0]
    ):
        raise ValueError(
            f"demographic_embeds of shape {tuple(demographic_embeds.shape)} does not match the "
            f"inputs of shape {tuple(inputs.shape)}: one embedding row is needed per input row"
        )


def _inject_routing(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], state: RoutingState
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, {**kwargs, "routing": state}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
