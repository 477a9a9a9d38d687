"""`MixtureLoRALinear`: a frozen nn.Linear plus a routed mixture of LoRA experts, fully vectorised.

The experts of each adapter are stored as one A ([N*r, in], or [r, in] with ``shared_a``) and one B
([out, N*r]). Each call computes them either densely (all experts, two GEMMs, the gates zero outside the
top-k) or only for each token's selected experts (grouped by expert), whichever is cheaper for the
layer's shape: `cuma.adapter.dispatch` holds both forms and the rule. Neither needs a host-device
synchronisation.

It is a PEFT tuner layer (``BaseTunerLayer``): the weights of each adapter live in ``cuma_A`` / ``cuma_B``
keyed by adapter name, and PEFT's enable/disable/set_adapter/delete_adapter work on it. The layer knows
nothing about training; the gates of a call come from the routing state of that call
(`cuma.adapter.router.active_routing`).
"""

from __future__ import annotations

import math

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from cuma.adapter.config import CuMAConfig
from cuma.adapter.dispatch import add_dense, add_sparse, choose_dispatch
from cuma.adapter.router import active_routing


class MixtureLoRALinear(nn.Module, BaseTunerLayer):
    """``y = W0 x + b + scaling * sum_e g_e B_e A_e x`` around a frozen ``base_layer``."""

    adapter_layer_names = ("cuma_A", "cuma_B")
    other_param_names = ("cuma_dropout", "cuma_config", "cuma_router_key")

    def __init__(self, base_layer: nn.Linear, name: str) -> None:
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"{name}: CuMA adapts nn.Linear modules only, got {type(base_layer).__name__}")
        self.base_layer = base_layer.requires_grad_(False)
        self.name = name
        self.cuma_A = nn.ParameterDict()
        self.cuma_B = nn.ParameterDict()
        self.cuma_dropout = nn.ModuleDict()
        self.cuma_config: dict[str, CuMAConfig] = {}
        self.cuma_router_key: dict[str, str | None] = {}
        self.merged_adapters: list[str] = []
        self._disable_adapters = False

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def update_layer(self, adapter_name: str, config: CuMAConfig, router_key: str | None) -> None:
        """Add adapter ``adapter_name``: its experts, initialised as PEFT initialises LoRA."""
        if (router_key is None) == config.has_router:
            raise ValueError(f"{self.name}: routing={config.routing!r} but router_key={router_key!r}")
        weight = self.base_layer.weight
        # Adapter weights stay float32 (float64 for a float64 base) whatever the base dtype, like PEFT's
        # autocast_adapter_dtype; the forward casts them to the compute dtype.
        dtype = weight.dtype if weight.dtype in (torch.float32, torch.float64) else torch.float32
        factory = {"device": weight.device, "dtype": dtype}
        experts_a = 1 if config.shared_a else config.num_experts
        self.cuma_A[adapter_name] = nn.Parameter(
            torch.empty(experts_a * config.rank, self.in_features, **factory)
        )
        self.cuma_B[adapter_name] = nn.Parameter(
            torch.empty(self.out_features, config.num_experts * config.rank, **factory)
        )
        self.cuma_dropout[adapter_name] = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.cuma_config[adapter_name] = config
        self.cuma_router_key[adapter_name] = router_key
        self.reset_parameters(adapter_name)
        self.set_adapter(self.active_adapters)

    def reset_parameters(self, adapter_name: str) -> None:
        """LoRA initialisation as in PEFT: A per expert kaiming-uniform (fan-in = in_features), B zero."""
        nn.init.kaiming_uniform_(self.cuma_A[adapter_name], a=math.sqrt(5))
        nn.init.zeros_(self.cuma_B[adapter_name])

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        adapter = self.active_adapters[0] if self.active_adapters else None
        if self.disable_adapters or self.merged or adapter not in self.cuma_A:
            return self.base_layer(x, *args, **kwargs)
        config = self.cuma_config[adapter]
        gates = None
        router_key = self.cuma_router_key[adapter]
        if router_key is not None:
            routing = active_routing()
            if routing is None:
                raise RuntimeError(
                    f"{self.name} has a router but was called outside a CuMA model call: call the PEFT model "
                    "(forward/generate), and enable gradient checkpointing through it "
                    "(model.gradient_checkpointing_enable()), not through the base model"
                )
            gates = routing.gates(router_key, x, self.name)
        # Work on 2-D views so the base output is not itself a view: adding the experts in place into it
        # then needs no copy in backward (nn.Linear's backward does not need its own output).
        flat = x.reshape(-1, self.in_features)
        result = self.base_layer(flat)
        dtype = result.dtype
        lora_a, lora_b = self.cuma_A[adapter].to(dtype), self.cuma_B[adapter].to(dtype)
        inputs = self.cuma_dropout[adapter](flat).to(dtype)
        if gates is None:
            add_dense(result, inputs, lora_a, lora_b, None, config)
        else:
            gates = gates.to(dtype).expand(*x.shape[:-1], config.num_experts).reshape(-1, config.num_experts)
            form = choose_dispatch(config, self.in_features, self.out_features, dtype, len(flat), self.name)
            (add_sparse if form == "sparse" else add_dense)(result, inputs, lora_a, lora_b, gates, config)
        return result.view(*x.shape[:-1], self.out_features)

    # ------------------------------------------------------------------ merging
    def delta_weight(self, adapter_name: str) -> torch.Tensor:
        """``scaling * B A``: the fixed weight change of an adapter without a router (plain LoRA)."""
        config = self.cuma_config[adapter_name]
        if config.has_router:
            raise ValueError(
                f"{self.name}: adapter {adapter_name!r} routes each token (routing={config.routing!r}), so "
                "it has no fixed weight to merge; only the 'lora' preset (routing='none') can be merged"
            )
        return config.scaling * (self.cuma_B[adapter_name] @ self.cuma_A[adapter_name])

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        for name in adapter_names or self.active_adapters:
            if name in self.merged_adapters or name not in self.cuma_A:
                continue
            weight = self.base_layer.weight
            merged = weight.data + self.delta_weight(name).to(weight.dtype)
            if safe_merge and not torch.isfinite(merged).all():
                raise ValueError(f"{self.name}: merging adapter {name!r} gives non-finite weights")
            weight.data = merged
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            weight = self.base_layer.weight
            weight.data -= self.delta_weight(name).to(weight.dtype)

    def extra_repr(self) -> str:
        shapes = ", ".join(
            f"{name}: rank={c.rank}, experts={c.num_experts}, shared_a={c.shared_a}, "
            f"router={self.cuma_router_key[name]!r}"
            for name, c in self.cuma_config.items()
        )
        return f"in={self.in_features}, out={self.out_features}, {shapes}"
