"""`MixtureLoRALinear`: a frozen nn.Linear plus a routed mixture of LoRA experts, fully vectorised.

All experts are evaluated densely with two GEMMs, ``x @ A_all^T`` ([N*r, in]) and ``@ B_all^T``
([out, N*r]), the gates (zero for unselected experts) scaling each expert's r columns in between.
At LoRA ranks this costs less than the per-expert gather/scatter loop it replaces and needs no
host-device synchronisation. With ``shared_a`` the down-projection is one [r, in] GEMM whose output
is gate-weighted once per expert.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cuma.adapter.config import CuMAConfig
from cuma.adapter.router import RoutingState


class MixtureLoRALinear(nn.Module):
    """``y = W0 x + b + scaling * sum_e g_e B_e A_e x`` around a frozen ``base_layer``.

    The gates come from the call's ``RoutingState`` (injected by CuMAModel's scoped pre-hook);
    a layer without a router (plain LoRA) needs none.
    """

    def __init__(self, base_layer: nn.Linear, config: CuMAConfig, name: str, router_key: str | None) -> None:
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"{name}: CuMA adapts nn.Linear modules only, got {type(base_layer).__name__}")
        if (router_key is None) == config.has_router:
            raise ValueError(f"{name}: routing={config.routing!r} but router_key={router_key!r}")
        self.base_layer = base_layer.requires_grad_(False)
        self.config = config
        self.name = name
        self.router_key = router_key
        self.disabled = False
        weight = base_layer.weight
        dtype = weight.dtype if weight.dtype in (torch.float32, torch.float64) else torch.float32
        experts_a = 1 if config.shared_a else config.num_experts
        factory = {"device": weight.device, "dtype": dtype}
        self.lora_A = nn.Parameter(torch.empty(experts_a * config.rank, base_layer.in_features, **factory))
        self.lora_B = nn.Parameter(
            torch.empty(base_layer.out_features, config.num_experts * config.rank, **factory)
        )
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """LoRA initialisation as in PEFT: A per expert kaiming-uniform (fan-in = in_features), B zero."""
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B)

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def forward(self, x: torch.Tensor, routing: RoutingState | None = None) -> torch.Tensor:
        if self.disabled:
            return self.base_layer(x)
        gates = None
        if self.router_key is not None:
            if routing is None:
                raise RuntimeError(
                    f"{self.name} has a router but was called without routing state: call the model through "
                    "CuMAModel.forward/generate (gradient checkpointing, which re-runs layers after the call "
                    "has returned, is not supported)"
                )
            gates = routing.gates(self.router_key, x, self.name)
        # Work on 2-D views so the base output is not itself a view: adding the experts in place into it
        # then needs no copy in backward (nn.Linear's backward does not need its own output).
        flat = x.reshape(-1, self.in_features)
        result = self.base_layer(flat)
        dtype = result.dtype
        down = self.dropout(flat).to(dtype) @ self.lora_A.to(dtype).t()  # [T, N*r], or [T, r] if shared
        if gates is not None:
            rank, experts = self.config.rank, self.config.num_experts
            g = gates.to(dtype).expand(*x.shape[:-1], experts).reshape(-1, experts, 1)
            per_expert = down.unsqueeze(1) if self.config.shared_a else down.view(-1, experts, rank)
            down = (g * per_expert).reshape(-1, experts * rank)
        result.addmm_(down, self.lora_B.to(dtype).t(), alpha=self.config.scaling)
        return result.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"in={self.in_features}, out={self.out_features}, rank={c.rank}, experts={c.num_experts}, "
            f"shared_a={c.shared_a}, router={self.router_key!r}"
        )
