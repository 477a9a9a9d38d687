"""`CuMAModel`: the PEFT tuner that puts mixture-of-LoRA layers, routers and the demographic projection
on a frozen causal LM, and routes every call on that call's ``demographic_embeds``.

``get_cuma_model(base, config)`` returns a ``peft.PeftModelForCausalLM`` whose ``base_model`` is a
`CuMAModel`, as ``get_peft_model`` would for LoRA. PEFT's ``forward``/``generate`` pass
``demographic_embeds=`` through to `CuMAModel.forward`/`generate`, which build a `RoutingState` for that
call and make it the routing of the adapted layers inside the call only (`cuma.adapter.router`): no batch
data is ever stored on a module. Routers (one per block and sharing group) and the projection live on
the tuner in ``cuma_routers`` / ``cuma_projection``, keyed by adapter name like the experts, so PEFT saves
and loads them with the experts.

``forward(labels=...)`` returns ``loss = lm_loss + aux_loss`` (the weighted router losses), as Hugging
Face's mixture-of-experts models do, with both parts kept as ``lm_loss`` and ``aux_loss``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from peft.tuners.tuners_utils import BaseTuner
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast

from cuma.adapter.config import CuMAConfig
from cuma.adapter.layer import MixtureLoRALinear
from cuma.adapter.projection import DemographicProjection
from cuma.adapter.registration import PREFIX
from cuma.adapter.report import ParameterReport
from cuma.adapter.router import Router, RoutingState, checkpoint_context, use_routing

CONTAINERS = ("cuma_routers", "cuma_projection")


@dataclass
class CuMACausalLMOutput(CausalLMOutputWithPast):
    """A causal-LM output with the router losses: ``loss`` is ``lm_loss + aux_loss`` when labels are given.

    Declared fields (not attributes added to the base output) so they survive accelerate's output
    conversion under mixed precision.
    """

    lm_loss: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None


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
            raise ValueError("no CuMA model call was recorded inside record_routing()")
        shapes = {tuple(t.shape[1:]) for call in self.calls for t in call.values()}
        if len(shapes) > 1:
            raise ValueError(f"recorded calls have different sequence lengths {sorted(shapes)}; read .calls")
        return {name: torch.cat([call[name] for call in self.calls]) for name in self.calls[0]}


class CuMAModel(BaseTuner):
    """PEFT tuner of `CuMAConfig` adapters (one active adapter at a time)."""

    prefix: str = PREFIX
    tuner_layer_cls = MixtureLoRALinear
    target_module_mapping: ClassVar[dict[str, list[str]]] = {}
    uses_shared_state = True  # routers and projection are shared by the layers of a block

    # ------------------------------------------------------------ injection
    def _pre_injection_hook(self, model: nn.Module, config: CuMAConfig, adapter_name: str) -> None:
        if "cuma_routers" not in self._modules:
            self.cuma_routers = nn.ModuleDict()
            self.cuma_projection = nn.ModuleDict()
            self.base_parameter_count = sum(p.numel() for p in model.parameters())
            self._adapters_enabled = True
            self._recorder: RoutingRecord | None = None
        if not isinstance(config, CuMAConfig):
            raise TypeError(f"CuMAModel takes a CuMAConfig, got {type(config).__name__}")
        self._add_containers(model, config, adapter_name)

    def _add_containers(self, model: nn.Module, config: CuMAConfig, adapter_name: str) -> None:
        """The adapter's router table and projection, made once per adapter (also for adapters that
        ``PeftModel.add_adapter`` adds later, as TRL's DPOTrainer does for its reference copy)."""
        if adapter_name in self.cuma_routers:
            return
        self.cuma_routers[adapter_name] = nn.ModuleDict()
        if config.uses_demographics:
            device = next(model.parameters()).device
            self.cuma_projection[adapter_name] = DemographicProjection(config).to(device)
        self._containers(adapter_name).requires_grad_(adapter_name in self.active_adapters)

    def _create_and_replace(
        self,
        peft_config: CuMAConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **optional_kwargs: Any,
    ) -> None:
        if isinstance(target, MixtureLoRALinear):
            layer, linear = target, target.base_layer
        elif isinstance(target, nn.Linear):
            layer, linear = MixtureLoRALinear(target, current_key), target
        else:
            raise ValueError(
                f"CuMAConfig.target_modules matches {current_key}, a {type(target).__name__}, not nn.Linear"
            )
        self._add_containers(self.model, peft_config, adapter_name)
        router_key = None
        if peft_config.has_router:
            router_key = self._router_for(adapter_name, current_key, target_name, linear, peft_config)
        layer.update_layer(adapter_name, peft_config, router_key)
        layer.set_adapter(self.active_adapters)
        if layer is not target:
            self._replace_module(parent, target_name, layer, target)

    def _router_for(
        self, adapter_name: str, key: str, child: str, linear: nn.Linear, config: CuMAConfig
    ) -> str:
        """The router of ``key``'s block and sharing group, created on first use."""
        parent = key.rpartition(".")[0]
        group = next((g for g in config.router_sharing if child in g), (child,))
        router_key = f"{parent}.{'+'.join(group)}".replace(".", "-")
        routers = self.cuma_routers[adapter_name]
        if router_key not in routers:
            router = Router(config, linear.in_features).to(linear.weight.device)
            routers[router_key] = router.requires_grad_(adapter_name in self.active_adapters)
            return router_key
        shared = routers[router_key].hidden_proj
        if shared is not None and shared.in_features != linear.in_features:
            raise ValueError(
                f"{key} has in_features={linear.in_features} but shares router {router_key} with a layer of "
                f"in_features={shared.in_features}; remove it from CuMAConfig.router_sharing"
            )
        return router_key

    def _post_injection_hook(self, model: nn.Module, config: CuMAConfig, adapter_name: str) -> None:
        names = [n for n, m in model.named_modules() if isinstance(m, MixtureLoRALinear)]
        linear_names = sorted(
            {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
        )
        for target in config.target_modules:
            if not any(n == target or n.endswith("." + target) for n in names):
                raise ValueError(
                    f"CuMAConfig.target_modules entry {target!r} matches no module of "
                    f"{type(model).__name__}; its nn.Linear names are {linear_names}"
                )
        trainable = adapter_name in self.active_adapters and not config.inference_mode
        self._containers(adapter_name).requires_grad_(trainable)

    def _containers(self, adapter_name: str) -> nn.ModuleList:
        """The adapter's routers and projection, as one module."""
        parts = [
            getattr(self, name)[adapter_name] for name in CONTAINERS if adapter_name in getattr(self, name)
        ]
        return nn.ModuleList(parts)

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        # Routers sit two levels below their container (cuma_routers.<adapter>.<router>.<param>), deeper than
        # the layer weights PEFT's default mapping expects; drop the adapter level there.
        for container in CONTAINERS:
            marker = f"{container}.{adapter_name}."
            if key.startswith(marker) or f".{marker}" in key:
                head, _, tail = key.partition(marker)
                return f"{head}{container}.{tail}"
        return super()._remove_adapter_name_from_key(key, adapter_name)

    # ---------------------------------------------------------- adapters
    def set_adapter(self, adapter_name: str | list[str], inference_mode: bool = False) -> None:
        """Make ``adapter_name`` the active adapter; CuMA routes one adapter at a time."""
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name)
        if len(names) != 1:
            raise ValueError(f"CuMA routes one adapter at a time; got {names}")
        super().set_adapter(names[0], inference_mode=inference_mode)
        for name in self.peft_config:
            self._containers(name).requires_grad_(name == names[0] and not inference_mode)

    def _enable_adapter_layers(self, enabled: bool = True) -> None:
        super()._enable_adapter_layers(enabled)
        self._adapters_enabled = enabled

    @property
    def cuma_config(self) -> CuMAConfig:
        """The active adapter's config."""
        return self.peft_config[self.active_adapters[0]]

    @property
    def layers(self) -> dict[str, MixtureLoRALinear]:
        """Adapted linear name (in the base model) -> its layer."""
        return {n: m for n, m in self.model.named_modules() if isinstance(m, MixtureLoRALinear)}

    # --------------------------------------------------------------- calls
    def forward(self, *args: Any, demographic_embeds: torch.Tensor | None = None, **kwargs: Any) -> Any:
        """The base model's output with ``aux_loss`` (and, with labels, ``loss`` = LM loss + aux loss)."""
        if kwargs.get("return_dict") is False:
            raise TypeError("a CuMA model returns a ModelOutput with its aux_loss; drop return_dict=False")
        kwargs.pop(
            "output_router_logits", None
        )  # asked for by MoE-aware trainers; the aux loss is always made
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        state = self._state(input_ids, kwargs, demographic_embeds, expand=1, compute_aux=True)
        with self._routing(state):
            output = self.model(*args, **kwargs)
        losses = state.aux_losses if state is not None else []
        device = output.logits.device if getattr(output, "logits", None) is not None else None
        aux = torch.stack(losses).sum() if losses else torch.zeros((), device=device)
        lm_loss = output.get("loss")
        values = {**output, "lm_loss": lm_loss, "aux_loss": aux}
        if lm_loss is not None:
            values["loss"] = lm_loss + aux.to(lm_loss.dtype)
        if type(output) is CausalLMOutputWithPast:
            return CuMACausalLMOutput(**values)
        for key, value in values.items():
            output[key] = value
        return output

    @torch.no_grad()
    def generate(self, *args: Any, demographic_embeds: torch.Tensor | None = None, **kwargs: Any) -> Any:
        """``base_model.generate`` routed with one embedding per input row.

        Transformers expands each row ``max(num_beams, num_return_sequences)`` times with
        repeat_interleave; the embeddings are expanded the same way here.
        """
        generation_config = kwargs.get("generation_config") or self.model.generation_config
        beams = kwargs.get("num_beams") or generation_config.num_beams or 1
        returns = kwargs.get("num_return_sequences") or generation_config.num_return_sequences or 1
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        state = self._state(
            input_ids, kwargs, demographic_embeds, expand=max(beams, returns), compute_aux=False
        )
        with self._routing(state):
            return self.model.generate(*args, **kwargs)

    def _state(
        self,
        input_ids: torch.Tensor | None,
        kwargs: dict[str, Any],
        demographic_embeds: torch.Tensor | None,
        expand: int,
        compute_aux: bool,
    ) -> RoutingState | None:
        if demographic_embeds is not None:
            _check_rows(
                demographic_embeds, input_ids if input_ids is not None else kwargs.get("inputs_embeds")
            )
        adapter = self.active_adapters[0]
        config = self.peft_config[adapter]
        if not self._adapters_enabled or not config.has_router:
            return None
        demographic = None
        if config.uses_demographics:
            if demographic_embeds is None:
                raise ValueError(
                    f"this CuMA adapter routes on demographics (router_inputs={config.router_inputs}); "
                    f"pass demographic_embeds of shape [batch, {config.demographic_input_dim}]"
                )
            projection = self.cuma_projection[adapter]
            demographic = projection(demographic_embeds).repeat_interleave(expand, dim=0)
        return RoutingState(
            routers=self.cuma_routers[adapter],
            config=config,
            demographic=demographic,
            attention_mask=kwargs.get("attention_mask"),
            compute_aux=compute_aux,
            record={} if self._recorder is not None else None,
        )

    @contextmanager
    def _routing(self, state: RoutingState | None) -> Iterator[None]:
        with use_routing(state):
            yield
        if state is not None and self._recorder is not None:
            self._recorder.calls.append(
                {name: torch.cat(steps, dim=1) for name, steps in state.record.items()}
            )

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

    # ------------------------------------------------ gradient checkpointing
    def activation_checkpointing_enable(
        self, activation_checkpointing_kwargs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """The base model's checkpointing, with each recomputed block routed as in its first run.

        Routing is per call, and a checkpointed block is re-run during backward after the call returned;
        ``context_fn`` (non-reentrant checkpointing only) re-enters the call's routing for the recompute.
        """
        options = {"use_reentrant": False, **(activation_checkpointing_kwargs or {})}
        if options["use_reentrant"] or "context_fn" in options:
            raise ValueError(
                "CuMA routes each call, so gradient checkpointing must be non-reentrant with CuMA's own "
                "context_fn: drop use_reentrant=True and context_fn from the checkpointing kwargs"
            )
        self.model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={**options, "context_fn": checkpoint_context}, **kwargs
        )

    def gradient_checkpointing_enable(
        self, gradient_checkpointing_kwargs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """The older name of `activation_checkpointing_enable`."""
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, **kwargs)

    # --------------------------------------------------------- parameters
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The active adapter's trainable parameters by component, for separate learning rates."""
        adapter = self.active_adapters[0]
        layers = self.layers.values()
        return {
            "experts": [p for layer in layers for p in (layer.cuma_A[adapter], layer.cuma_B[adapter])],
            "routers": list(self.cuma_routers[adapter].parameters()),
            "projection": list(self.cuma_projection[adapter].parameters())
            if adapter in self.cuma_projection
            else [],
        }

    def parameter_report(self) -> ParameterReport:
        return ParameterReport.from_groups(self.parameter_groups(), self.base_parameter_count)


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
