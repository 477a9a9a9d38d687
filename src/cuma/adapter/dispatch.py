"""How `MixtureLoRALinear` computes its experts: all of them densely, or only each token's top-k.

``dense``: two GEMMs over every expert, ``x @ A_all^T`` ([T, N*r]) then ``@ B_all^T``, the gates (zero
for unselected experts) scaling each expert's r columns in between. Few, large GEMMs and no data
movement, but it computes N experts where top-k routing uses k: its adapter cost grows with ``N * r``.

``sparse``: the token-expert pairs are sorted by expert, the tokens' rows gathered in that order, and
each expert multiplies only its own slice (one ``torch.nn.functional.grouped_mm`` per projection, so no
host-device synchronisation); the results are added back with ``index_add_`` (on CUDA in no fixed order,
so bitwise reproducible only under ``torch.use_deterministic_algorithms``). Its adapter cost grows with
``k * r`` plus a gather and a scatter of k rows per token, which at small ranks costs more than the
experts it saves. For backward it keeps the layer input (which the block keeps anyway) and k rows of
rank r per token, where dense keeps 2 N*r values per token.

`choose_dispatch` picks by that cost model: sparse when the dense form's extra expert columns,
``(N - k) * r``, reach `SPARSE_MIN_SAVED_COLUMNS` and the call has at least `SPARSE_MIN_TOKENS` tokens
(the sparse form launches about four times as many kernels, a fixed cost that only long inputs repay;
a decoding step stays dense). With 8 experts and top-2 the paper's r=64 (384 columns) trains sparse and
r=8 (48) dense. Soft routing and plain LoRA use every expert, so they are always dense;
``CuMAConfig.dispatch`` forces either form (benchmarks/layer.py times both).

Both forms give the same outputs and gradients (to float rounding). Every expert's A and B rows live in one
parameter per adapter, so an expert that no token selected still belongs to the autograd graph: its rows
get an exact zero gradient under either form, never ``None``, and DDP needs no ``find_unused_parameters``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from cuma.adapter.config import CuMAConfig

Dispatch = Literal["dense", "sparse"]

SPARSE_MIN_SAVED_COLUMNS = 256
"""Sparse pays off once it skips this many expert columns per token, ``(num_experts - top_k) * rank``.
On one CPU thread (fp32, in=out=2048, 8 experts, top-2) the two forms cost the same near r=28 (168
columns); more threads add a synchronisation per expert GEMM to the sparse form, hence the margin."""


SPARSE_MIN_TOKENS = 1024
"""Fewest tokens in one call for which ``dispatch='auto'`` goes sparse."""

GROUPED_MM_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
"""The dtypes ``torch.nn.functional.grouped_mm`` multiplies (float64 layers are always dense)."""


def row_alignment(dtype: torch.dtype) -> int:
    """``grouped_mm`` needs every row of its operands to start on a 16-byte boundary: sizes must be
    multiples of this many elements."""
    return 16 // torch.empty((), dtype=dtype).element_size()


def grouped_mm_fits(config: CuMAConfig, in_features: int, out_features: int, dtype: torch.dtype) -> bool:
    sizes = (config.rank, in_features, out_features)
    return dtype in GROUPED_MM_DTYPES and all(size % row_alignment(dtype) == 0 for size in sizes)


def choose_dispatch(
    config: CuMAConfig,
    in_features: int,
    out_features: int,
    dtype: torch.dtype,
    tokens: int,
    layer: str = "layer",
) -> Dispatch:
    """The form a call of ``layer`` on ``tokens`` tokens uses (the rule is in the module docstring)."""
    sparse_possible = config.routing == "topk" and config.top_k < config.num_experts
    fits = grouped_mm_fits(config, in_features, out_features, dtype)
    if config.dispatch == "sparse":
        if not sparse_possible:
            raise ValueError(
                f"{layer}: CuMAConfig.dispatch='sparse' needs top-k routing with top_k < num_experts, got "
                f"routing={config.routing!r}, top_k={config.top_k}, num_experts={config.num_experts}"
            )
        if not fits:
            raise ValueError(
                f"{layer}: CuMAConfig.dispatch='sparse' needs a dtype among {GROUPED_MM_DTYPES} (got "
                f"{dtype}) and rank ({config.rank}), in_features ({in_features}) and out_features "
                f"({out_features}) that are multiples of 16 bytes (torch.nn.functional.grouped_mm's rows); "
                "use dispatch='auto' or 'dense'"
            )
        return "sparse"
    if config.dispatch == "dense" or not (sparse_possible and fits):
        return "dense"
    saved = (config.num_experts - config.top_k) * config.rank
    return "sparse" if saved >= SPARSE_MIN_SAVED_COLUMNS and tokens >= SPARSE_MIN_TOKENS else "dense"


def add_dense(
    result: torch.Tensor,
    x: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    gates: torch.Tensor | None,
    config: CuMAConfig,
) -> torch.Tensor:
    """``result += scaling * sum_e g_e B_e A_e x`` over all experts; x [T, in], gates [T, N] or None."""
    down = x @ lora_a.t()  # [T, N*r] ([T, r] with shared_a)
    if gates is not None:
        experts, rank = config.num_experts, config.rank
        per_expert = down.unsqueeze(1) if config.shared_a else down.view(-1, experts, rank)
        down = (gates.unsqueeze(-1) * per_expert).reshape(-1, experts * rank)
    return result.addmm_(down, lora_b.t(), alpha=config.scaling)


def add_sparse(
    result: torch.Tensor,
    x: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    gates: torch.Tensor,
    config: CuMAConfig,
) -> torch.Tensor:
    """The same sum over each token's top-k experts only; x [T, in], gates [T, N] (zero outside the top-k).

    The experts are re-read from the gates' top-k: where a selected gate underflowed to zero another
    zero-gate expert may stand in, which changes no output and no gradient (both are scaled by that zero).
    """
    experts, rank, k = config.num_experts, config.rank, config.top_k
    weights, chosen = gates.topk(k, dim=-1)  # [T, k]
    order = chosen.flatten().argsort(stable=True)  # token-expert pairs grouped by expert
    token = order.div(k, rounding_mode="floor")
    offsets = torch.bincount(chosen.flatten(), minlength=experts).cumsum(0).to(torch.int32)
    weights = weights.flatten()[order].unsqueeze(-1) * config.scaling
    if config.shared_a:
        down = (x @ lora_a.t()).index_select(0, token)  # one A: project once, then gather [T*k, r]
    else:
        a_t = lora_a.view(experts, rank, -1).transpose(1, 2)  # [N, in, r]
        down = GatheredGroupedMM.apply(x, token, a_t, offsets)
    b_t = lora_b.view(-1, experts, rank).permute(1, 2, 0)  # [N, r, out]
    up = F.grouped_mm(down * weights, b_t, offs=offsets)  # [T*k, out]
    return IndexAdd.apply(result, token, up)


class GatheredGroupedMM(torch.autograd.Function):
    """``grouped_mm(x[rows], weight, offs)`` that saves ``x`` for backward, not its gathered copy.

    The copy has k rows per token (k times the layer input, which the rest of the graph already keeps);
    backward gathers it again, which costs less than holding it from forward to backward.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        rows: torch.Tensor,
        weight: torch.Tensor,
        offsets: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, rows, weight, offsets)
        return F.grouped_mm(x.index_select(0, rows), weight, offs=offsets)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, torch.Tensor | None, None]:
        x, rows, weight, offsets = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_rows = F.grouped_mm(grad, weight.transpose(1, 2), offs=offsets)
            grad_x = torch.zeros_like(x).index_add_(0, rows, grad_rows)
        if ctx.needs_input_grad[2]:
            grad_weight = F.grouped_mm(x.index_select(0, rows).t(), grad, offs=offsets)
        return grad_x, None, grad_weight, None


class IndexAdd(torch.autograd.Function):
    """``out.index_add_(0, rows, source)`` that saves only ``rows`` for backward (autograd's ``index_add_``
    also keeps ``source``, here the k output rows per token)."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, out: torch.Tensor, rows: torch.Tensor, source: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(rows)
        ctx.mark_dirty(out)
        return out.index_add_(0, rows, source)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, None, torch.Tensor | None]:
        (rows,) = ctx.saved_tensors
        return grad, None, grad.index_select(0, rows) if ctx.needs_input_grad[2] else None
