"""How `MixtureLoRALinear` computes its experts: all of them densely, or only each token's top-k.

``dense``: two GEMMs over every expert, ``x @ A_all^T`` ([T, N*r]) then ``@ B_all^T``, the gates (zero
for unselected experts) scaling each expert's r columns in between. Few, large GEMMs and no data
movement, but it computes N experts where top-k routing uses k: its adapter cost grows with ``N * r``.

``sparse``: only each token's k selected experts, in one of two ways (`add_sparse` picks by device):

- by expert set (CPU, `add_by_expert_set`): the tokens grouped by the set of k experts they chose (28
  sets for 8 experts and top-2); per set one GEMM of width k*r per projection, each token's row gathered
  once and its k experts' sum added back once, a set's rows staying in cache between its GEMMs. On
  2 CPU threads at r=64 this costs about 0.2x of the base projection less than grouping by expert, whose
  gathers and scatters move k rows per token through memory; but it runs 7 times as many GEMMs, each a
  parallel region, which costs more than it saves when another process competes for the cores.
- by expert (elsewhere, `add_grouped_mm`): the token-expert pairs sorted by expert, the tokens' rows
  gathered in that order and each expert multiplying its own slice (one
  ``torch.nn.functional.grouped_mm`` per projection, so no host-device synchronisation); the results
  added back with ``index_add_`` (on CUDA in no fixed order, so bitwise reproducible only under
  ``torch.use_deterministic_algorithms``).

Either way the adapter cost grows with ``k * r`` plus a gather and a scatter of the rows, which at small
ranks costs more than the experts it saves. For backward both keep the layer input (which the block
keeps anyway) and k rows of rank r per token, where dense keeps 2 N*r values per token.

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

from collections.abc import Iterator
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

    By expert set or by expert, as `SPARSE_FORMS` says for the device (the module docstring says why).
    The experts are re-read from the gates' top-k:
    where a selected gate underflowed to zero another zero-gate expert may stand in, which changes no
    output and no gradient (both are scaled by that zero).
    """
    add = SPARSE_FORMS.get(x.device.type, add_grouped_mm)
    return add(result, x, lora_a, lora_b, gates, config)


def add_by_expert_set(
    result: torch.Tensor,
    x: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    gates: torch.Tensor,
    config: CuMAConfig,
) -> torch.Tensor:
    """`add_sparse` with the tokens grouped by the set of k experts they chose, one group per set."""
    experts, k = config.num_experts, config.top_k
    weights, chosen = gates.topk(k, dim=-1)  # [T, k]
    chosen, slot = chosen.sort(dim=-1)  # a set's experts in one order, whatever their ranking
    key = (chosen * experts ** torch.arange(k, device=chosen.device)).sum(-1)
    order = key.argsort(stable=True)  # tokens grouped by expert set
    sets, counts = torch.unique_consecutive(chosen[order], dim=0, return_counts=True)
    weights = (weights.gather(-1, slot) * config.scaling)[order]  # [T, k] in group order
    ends = counts.cumsum(0).tolist()
    return ExpertSetLoRA.apply(result, x, lora_a, lora_b, weights, order, sets.flatten(), ends, config)


def add_grouped_mm(
    result: torch.Tensor,
    x: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    gates: torch.Tensor,
    config: CuMAConfig,
) -> torch.Tensor:
    """`add_sparse` with the token-expert pairs sorted by expert and one ``grouped_mm`` per projection."""
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


SPARSE_FORMS = {"cpu": add_by_expert_set}
"""The sparse form per device type; any other device groups by expert (`add_grouped_mm`)."""


class ExpertSetLoRA(torch.autograd.Function):
    """``result[t] += sum_j w[t, j] B_{e_j} A_{e_j} x[t]``, one expert set at a time.

    ``order`` lists the tokens grouped by expert set, ``ends`` where each group ends in it, ``sets`` each
    group's k experts (ascending, as in ``weights``' columns). Per set, the k experts' rows of A and
    columns of B are gathered side by side, so a group's tokens take one GEMM of width k*r per
    projection; each token's row is gathered once and its k experts' sum added back once (grouping by
    expert moves k rows per token), and a group's rows stay in cache between its GEMMs. With
    ``shared_a`` a token is projected once. Backward keeps only ``x`` (which the block keeps anyway),
    the indices and the rank-r projections, and writes each token's input gradient once, with no
    zero-filled buffer to scatter into.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        result: torch.Tensor,
        x: torch.Tensor,
        lora_a: torch.Tensor,
        lora_b: torch.Tensor,
        weights: torch.Tensor,
        order: torch.Tensor,
        sets: torch.Tensor,
        ends: list[int],
        config: CuMAConfig,
    ) -> torch.Tensor:
        a_sets, b_sets = set_weights(lora_a, lora_b, sets, config)
        down = x.new_empty(len(x), a_sets.shape[-2])  # [T, k*r] ([T, r] with shared_a), group order
        for group, rows in enumerate(group_rows(ends)):
            tokens = order[rows]
            torch.mm(x.index_select(0, tokens), a_sets[group].t(), out=down[rows])
            result.index_add_(0, tokens, scale(down[rows], weights[rows], config) @ b_sets[:, group].t())
        ctx.save_for_backward(x, lora_a, lora_b, weights, order, sets, down)
        ctx.ends, ctx.config = ends, config
        ctx.mark_dirty(result)
        return result

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        x, lora_a, lora_b, weights, order, sets, down = ctx.saved_tensors
        config = ctx.config
        _, need_x, need_a, need_b, need_w = ctx.needs_input_grad[:5]
        rank = config.rank
        a_sets, b_sets = set_weights(lora_a, lora_b, sets, config)
        grad_x = torch.empty_like(x) if need_x else None
        grad_a_sets = torch.zeros_like(a_sets[:1] if config.shared_a else a_sets) if need_a else None
        grad_b_sets = torch.empty_like(b_sets) if need_b else None
        grad_w = torch.empty_like(weights) if need_w else None
        for group, rows in enumerate(group_rows(ctx.ends)):
            tokens = order[rows]
            grad_up = grad.index_select(0, tokens)
            if need_b:
                torch.mm(grad_up.t(), scale(down[rows], weights[rows], config), out=grad_b_sets[:, group])
            grad_scaled = (grad_up @ b_sets[:, group]).view(len(tokens), -1, rank)
            if need_w:
                grad_w[rows] = (grad_scaled * down[rows].view(len(tokens), -1, rank)).sum(-1)
            grad_down = grad_scaled * weights[rows].unsqueeze(-1)
            grad_down = grad_down.sum(1) if config.shared_a else grad_down.view(len(tokens), -1)
            if need_a:
                a_index = 0 if config.shared_a else group
                grad_a_sets[a_index].addmm_(grad_down.t(), x.index_select(0, tokens))
            if need_x:
                grad_x.index_copy_(0, tokens, grad_down @ a_sets[group])
        grad_a = grad_b = None
        if need_a:
            grad_a = grad_a_sets[0] if config.shared_a else gather_back(grad_a_sets, sets, config, 0)
        if need_b:
            grad_b = gather_back(grad_b_sets, sets, config, 1)
        return grad, grad_x, grad_a, grad_b, grad_w, None, None, None, None


def set_weights(
    lora_a: torch.Tensor, lora_b: torch.Tensor, sets: torch.Tensor, config: CuMAConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each expert set's A rows [G, k*r, in] and B columns [out, G, k*r], the set's experts side by side
    (with ``shared_a`` A itself, [1, r, in], which every set shares)."""
    rank, groups = config.rank, len(sets) // config.top_k
    out = lora_b.shape[0]
    b_sets = lora_b.view(out, -1, rank).index_select(1, sets).view(out, groups, -1)
    if config.shared_a:
        return lora_a.unsqueeze(0).expand(groups, -1, -1), b_sets
    a_sets = lora_a.view(-1, rank, lora_a.shape[-1]).index_select(0, sets).view(groups, -1, lora_a.shape[-1])
    return a_sets, b_sets


def scale(down: torch.Tensor, weights: torch.Tensor, config: CuMAConfig) -> torch.Tensor:
    """The k gated rank-r projections of each token side by side, [n, k*r], from [n, k*r] or shared [n, r]."""
    n, k = weights.shape
    projected = down.view(n, -1, config.rank)  # [n, k or 1, r]
    return (projected * weights.unsqueeze(-1)).view(n, k * config.rank)


def gather_back(per_set: torch.Tensor, sets: torch.Tensor, config: CuMAConfig, dim: int) -> torch.Tensor:
    """Sum the per-set gradients of A ([G, k*r, in], ``dim=0``) or B ([out, G, k*r], ``dim=1``) into
    each expert's rows or columns."""
    experts, rank = config.num_experts, config.rank
    if dim == 0:
        parts = per_set.reshape(-1, rank, per_set.shape[-1])
        total = parts.new_zeros(experts, rank, parts.shape[-1]).index_add_(0, sets, parts)
        return total.view(-1, parts.shape[-1])
    parts = per_set.reshape(per_set.shape[0], -1, rank)
    return parts.new_zeros(parts.shape[0], experts, rank).index_add_(1, sets, parts).view(parts.shape[0], -1)


def group_rows(ends: list[int]) -> Iterator[slice]:
    """Each expert set's slice of the tokens in group order."""
    start = 0
    for end in ends:
        yield slice(start, end)
        start = end


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
