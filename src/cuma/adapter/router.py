"""The router and the per-call routing state that the adapted layers read.

A router maps the hidden state h and/or the projected profile embedding d to expert weights.
Its first layer is split as ``W_h h + W_d d + b``: the demographic term is the same for every token of
a sequence, so it is computed once per sequence and broadcast instead of concatenating d onto each token.

The state of one call reaches the layers through a context variable that `use_routing` sets for the
duration of that call only (PEFT's Poly passes its per-call ``task_ids`` the same way, with scoped
pre-hooks). A context variable is per thread, so concurrent calls from a server's threads never see
each other's profiles, and `checkpoint_context` re-enters the same state when gradient checkpointing
recomputes a layer during backward, after the call itself has returned.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cuma.adapter.config import CuMAConfig


class Router(nn.Module):
    """MLP router over [hidden ; demographic] with the first linear layer split by input."""

    def __init__(self, config: CuMAConfig, hidden_dim: int) -> None:
        super().__init__()
        self.config = config
        first_out = config.router_hidden_size if config.router_layers > 1 else config.num_experts
        self.hidden_proj = (
            nn.Linear(hidden_dim, first_out, bias=False) if "hidden" in config.router_inputs else None
        )
        self.demographic_proj = (
            nn.Linear(config.projected_demographic_dim, first_out, bias=False)
            if config.uses_demographics
            else None
        )
        self.bias = nn.Parameter(torch.empty(first_out))
        self.dropout = nn.Dropout(config.router_dropout)
        sizes = [config.router_hidden_size] * (config.router_layers - 1) + [config.num_experts]
        self.head = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.reset_first_layer()

    def reset_first_layer(self) -> None:
        """Initialise the split first layer exactly like one nn.Linear over the concatenated input."""
        parts = [p.weight for p in (self.hidden_proj, self.demographic_proj) if p is not None]
        bound = 1.0 / math.sqrt(sum(w.shape[1] for w in parts))
        with torch.no_grad():
            for weight in parts:
                weight.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)

    def forward(self, hidden: torch.Tensor, demographic: torch.Tensor | None) -> torch.Tensor:
        """Router logits [B, S, N], or [B, 1, N] when the router reads only the demographic embedding.

        Computed in the dtype of ``hidden`` (the router's parameters stay in float32 for training).
        """
        dtype = hidden.dtype
        bias = self.bias.to(dtype)
        if self.demographic_proj is None:
            out = F.linear(self.dropout(hidden), self.hidden_proj.weight.to(dtype), bias)
        else:
            if demographic is None:
                raise ValueError(
                    f"this router reads demographics (router_inputs={self.config.router_inputs}) "
                    "but no demographic_embeds were passed"
                )
            demographic = demographic.to(device=hidden.device, dtype=dtype)
            out = F.linear(demographic, self.demographic_proj.weight.to(dtype), bias).unsqueeze(1)
            if self.hidden_proj is not None:
                out = F.linear(self.dropout(hidden), self.hidden_proj.weight.to(dtype)) + out
        for layer in self.head:
            out = F.linear(self.dropout(F.relu(out)), layer.weight.to(dtype), layer.bias.to(dtype))
        return out


def routing_weights(
    logits: torch.Tensor, config: CuMAConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(gates, probs, selected): gates are zero outside the chosen experts; probs is the full softmax;
    selected [..., k] holds the chosen experts' indices (under soft routing, where every expert is used,
    the top-1, which is what the load-balancing loss counts). With ``top_k=1`` the gate is the raw
    probability, as in the Switch Transformer: renormalised, a single gate would always be 1 and the
    router would get no gradient from the task loss.

    Gates and probs are at least float32, so the softmax and the top-k weights are not rounded to bf16.
    """
    probs = logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(dim=-1)
    if config.routing == "soft":
        return probs, probs, probs.argmax(dim=-1, keepdim=True)
    top, index = probs.topk(config.top_k, dim=-1)
    if config.top_k > 1:  # a single gate stays the raw probability (see above)
        top = top / top.sum(dim=-1, keepdim=True) if config.top_k_weights == "normalize" else top.softmax(-1)
    return torch.zeros_like(probs).scatter(-1, index, top), probs, index


def router_aux_loss(
    logits: torch.Tensor, probs: torch.Tensor, selected: torch.Tensor, mask: torch.Tensor, config: CuMAConfig
) -> torch.Tensor:
    """Weighted load-balancing (+ z-) loss of one router call over the non-padding tokens.

    Switch-style ``N * sum_e f_e P_e``: f_e is the fraction of routed slots sent to e, counted from the
    selected indices (a selected expert whose gate underflows to 0 still counts), P_e the mean
    full-softmax probability, so experts that were not selected still get a gradient. Both equal 1/N at
    perfect balance, giving a loss of 1.
    """
    weights = mask.to(probs.dtype).unsqueeze(-1)  # [B, S, 1]; routing may be [B, 1, N] and broadcasts
    tokens = weights.sum().clamp_min(1.0)
    chosen = F.one_hot(selected, config.num_experts).to(probs.dtype).mean(dim=-2)
    f = (chosen * weights).sum(dim=(0, 1)) / tokens
    p = (probs * weights).sum(dim=(0, 1)) / tokens
    loss = config.load_balancing_weight * config.num_experts * (f * p).sum()
    if config.router_z_loss_weight:
        z = torch.logsumexp(logits.to(probs.dtype), dim=-1).square().unsqueeze(-1)
        loss = loss + config.router_z_loss_weight * (z * weights).sum() / tokens
    return loss


@dataclass
class RoutingState:
    """Everything about one call that routing needs; lives only for that call.

    CuMAModel creates it per forward/generate and hands it to the adapted layers with `use_routing`, so no
    batch data is ever stored on a module. ``routers`` are the active adapter's; ``demographic`` holds the
    projected embeddings, one row per input row (CuMAModel checks the rows before building the state).
    """

    routers: nn.ModuleDict
    config: CuMAConfig
    demographic: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    compute_aux: bool = True
    record: dict[str, list[torch.Tensor]] | None = None
    aux_losses: list[torch.Tensor] = field(default_factory=list, init=False, repr=False)
    _cache: dict[str, tuple[torch.Tensor, tuple[Any, ...], torch.Tensor]] = field(
        default_factory=dict, init=False, repr=False
    )

    def gates(self, router_key: str, hidden: torch.Tensor, layer_name: str) -> torch.Tensor:
        """Expert gates [B, S, N] (or [B, 1, N]) for ``hidden`` [B, S, in]; a router runs once per input."""
        cached = self._cache.get(router_key)
        if cached is not None and cached[1] == tensor_key(hidden):
            gates = cached[2]
        else:
            logits = self.routers[router_key](hidden, self.demographic)
            gates, probs, selected = routing_weights(logits, self.config)
            self._cache[router_key] = (hidden, tensor_key(hidden), gates)  # the tensor keeps its memory
            if self.compute_aux and self.config.load_balancing_weight + self.config.router_z_loss_weight > 0:
                self.aux_losses.append(
                    router_aux_loss(logits, probs, selected, self._token_mask(hidden), self.config)
                )
        if self.record is not None:
            self.record.setdefault(layer_name, []).append(gates.detach().expand(*hidden.shape[:-1], -1).cpu())
        return gates

    def _token_mask(self, hidden: torch.Tensor) -> torch.Tensor:
        batch, seq = hidden.shape[:2]
        if self.attention_mask is None:
            return torch.ones(batch, seq, device=hidden.device)
        mask = self.attention_mask
        if mask.dim() != 2 or mask.shape[0] != batch or mask.shape[1] < seq:
            raise ValueError(
                f"attention_mask of shape {tuple(mask.shape)} does not fit hidden states of shape "
                f"{tuple(hidden.shape)}; expected a 2-D [batch, sequence] padding mask"
            )
        # With a KV cache the mask covers past and new tokens; the new ones are last.
        return mask[:, mask.shape[1] - seq :].to(hidden.device)

    def for_recompute(self) -> RoutingState:
        """The same routing for a block that gradient checkpointing re-runs during backward. The recompute
        must save the same tensors as the first run, aux loss included, so it computes the aux losses again
        into a list of its own that nobody reads; the routing was already recorded."""
        return replace(self, record=None)


def tensor_key(tensor: torch.Tensor) -> tuple[Any, ...]:
    """What makes two tensors hold the same values while the first is alive: the same memory, layout and
    version (aliases share the version counter, which every in-place write moves). Hooks that wrap each
    module's inputs (DeepSpeed ZeRO-3 hands the q, k and v projections each their own alias of the block's
    hidden state) must not make a shared router run, and count its aux loss, once per projection. Inference
    tensors keep no version counter, so for them only the same object counts."""
    version = ("object", id(tensor)) if tensor.is_inference() else tensor._version
    return (tensor.data_ptr(), tensor.shape, tensor.stride(), tensor.dtype, tensor.device, version)


_ACTIVE: ContextVar[RoutingState | None] = ContextVar("cuma_routing", default=None)


def active_routing() -> RoutingState | None:
    """The routing state of the call in progress on this thread, if any."""
    return _ACTIVE.get()


@contextmanager
def use_routing(state: RoutingState | None) -> Iterator[None]:
    """Make ``state`` the routing of every adapted layer called inside the block, and only there."""
    token = _ACTIVE.set(state)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def checkpoint_context() -> tuple[Any, Any]:
    """``context_fn`` for ``torch.utils.checkpoint``: the recompute of a checkpointed block runs under the
    routing of the call that first ran it."""
    state = _ACTIVE.get()
    return nullcontext(), use_routing(None if state is None else state.for_recompute())
