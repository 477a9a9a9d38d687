"""How `MixtureLoRALinear` computes its experts: all of them densely, or only each token's top-k.

``dense``: two GEMMs over every expert, ``x @ A_all^T`` ([T, N*r]) then ``@ B_all^T``, the gates (zero
for unselected experts) scaling each expert's r columns in between. Few, large GEMMs and no data
movement, but it computes N experts where top-k routing uses k: its adapter cost grows with ``N * r``.

``sparse``: only each token's k selected experts, the token-expert pairs sorted by expert, each expert
multiplying only its own pairs' rows, in one of two ways (`SPARSE_FORMS` picks by device):

- on CPU (`add_by_expert`, `ExpertLoRA`): one expert at a time, its rows gathered, multiplied and added
  back with ``index_add_`` in chunks of a few MB that reuse one workspace, and only indices and rank-r
  projections saved. At r=64 (2 threads or 1) one expert at a time cost about 0.15x of the base
  projection less than gathering all k rows per token first and calling ``grouped_mm``, whose CPU
  kernel loops over the experts anyway; the reused workspace saved about 0.1x more (no fresh pages).
  Grouping the tokens by their *set* of experts instead (one gather and one scatter per token) saved
  no more, with 28 sets' GEMMs to launch instead of 8.
- elsewhere (`add_grouped_mm`): all rows gathered, one ``torch.nn.functional.grouped_mm`` per projection,
  so no host-device synchronisation; the results added back with ``index_add_`` (on CUDA in no fixed
  order, so bitwise reproducible only under ``torch.use_deterministic_algorithms``).

Either way the adapter cost grows with ``k * r`` plus a gather and a scatter of the rows, which at small
ranks costs more than the experts it saves. Both run about 60-80 parallel regions per training step
against dense's dozen: when another process competes for the cores each region waits milliseconds for
its second thread, and dense wins (benchmarks/layer.py prints the load average beside its timings).
For backward both keep the layer input (which the block keeps anyway) and k rows of rank r per token,
where dense keeps 2 N*r values per token.

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

    As `SPARSE_FORMS` says for the device (the module docstring says why). The experts are re-read from
    the gates' top-k: where a selected gate underflowed to zero another zero-gate expert may stand in,
    which changes no output and no gradient (both are scaled by that zero).
    """
    add = SPARSE_FORMS.get(x.device.type, add_grouped_mm)
    return add(result, x, lora_a, lora_b, gates, config)


def add_by_expert(
    result: torch.Tensor,
    x: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    gates: torch.Tensor,
    config: CuMAConfig,
) -> torch.Tensor:
    """`add_sparse` one expert at a time over the token-expert pairs sorted by expert (`ExpertLoRA`)."""
    pair_experts, tokens, weights = sorted_pairs(gates, config)
    experts, counts = torch.unique_consecutive(pair_experts, return_counts=True)
    groups = list(zip(experts.tolist(), counts.cumsum(0).tolist(), strict=True))  # a host sync, free on CPU
    return ExpertLoRA.apply(result, x, lora_a, lora_b, weights, tokens, groups, config)


def add_grouped_mm(
    result: torch.Tensor,
    x: torch.Tensor,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    gates: torch.Tensor,
    config: CuMAConfig,
) -> torch.Tensor:
    """`add_sparse` with the token-expert pairs sorted by expert and one ``grouped_mm`` per projection."""
    experts, rank = config.num_experts, config.rank
    pair_experts, token, weights = sorted_pairs(gates, config)
    offsets = torch.bincount(pair_experts, minlength=experts).cumsum(0).to(torch.int32)
    weights = weights.unsqueeze(-1)
    if config.shared_a:
        down = (x @ lora_a.t()).index_select(0, token)  # one A: project once, then gather [T*k, r]
    else:
        a_t = lora_a.view(experts, rank, -1).transpose(1, 2)  # [N, in, r]
        down = GatheredGroupedMM.apply(x, token, a_t, offsets)
    b_t = lora_b.view(-1, experts, rank).permute(1, 2, 0)  # [N, r, out]
    up = F.grouped_mm(down * weights, b_t, offs=offsets)  # [T*k, out]
    return IndexAdd.apply(result, token, up)


def sorted_pairs(gates: torch.Tensor, config: CuMAConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gates' top-k token-expert pairs sorted by expert: each pair's expert, token and scaled gate."""
    k = config.top_k
    weights, chosen = gates.topk(k, dim=-1)  # [T, k]
    order = chosen.flatten().argsort(stable=True)
    return (
        chosen.flatten()[order],
        order.div(k, rounding_mode="floor"),
        weights.flatten()[order] * config.scaling,
    )


SPARSE_FORMS = {"cpu": add_by_expert}
"""The sparse form per device type; any other device uses ``grouped_mm`` (`add_grouped_mm`)."""


class ExpertLoRA(torch.autograd.Function):
    """``result[t] += sum_p w[p] B_{e_p} A_{e_p} x[t]`` over the pairs p of token t, one expert at a time.

    ``tokens`` holds each pair's token, the pairs sorted by expert; ``groups`` each expert that has pairs
    and where its pairs end. An expert's pairs are taken in chunks of at most `chunk_rows` rows: each
    chunk's rows are gathered, multiplied and added back in one workspace that every chunk reuses. Large
    fresh buffers are what made this form slow: allocations past glibc's mmap threshold (32 MB at most)
    come from the kernel and fault in every page on first touch, and a buffer per expert for the gathered
    rows and another for their products allocated about 0.7 GB per training step of one projection at
    8192 tokens, in=out=2048, r=64 (benchmarks/layer.py). Backward keeps ``x`` (which the block keeps
    anyway), the indices and the rank-r projections. With ``shared_a`` every token is projected once.
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        result: torch.Tensor,
        x: torch.Tensor,
        lora_a: torch.Tensor,
        lora_b: torch.Tensor,
        weights: torch.Tensor,
        tokens: torch.Tensor,
        groups: list[tuple[int, int]],
        config: CuMAConfig,
    ) -> torch.Tensor:
        in_features, out_features = x.shape[1], result.shape[1]
        width = max(in_features, out_features)  # of the workspace: gathered inputs or products
        chunks = list(expert_chunks(groups, chunk_rows(width, x.element_size())))
        workspace = Workspace(x, chunks, width)
        if config.shared_a:
            down = (x @ lora_a.t()).index_select(0, tokens)
        else:
            down = x.new_empty(len(tokens), config.rank)
        for e, rows in chunks:
            if not config.shared_a:
                inputs = torch.index_select(x, 0, tokens[rows], out=workspace.rows(rows, in_features))
                torch.mm(inputs, expert_a(lora_a, e, config).t(), out=down[rows])
            scaled = down[rows] * weights[rows].unsqueeze(-1)
            up = torch.mm(scaled, expert_b(lora_b, e, config).t(), out=workspace.rows(rows, out_features))
            result.index_add_(0, tokens[rows], up)
        ctx.save_for_backward(x, lora_a, lora_b, weights, tokens, down)
        ctx.chunks, ctx.config = chunks, config
        ctx.mark_dirty(result)
        return result

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        x, lora_a, lora_b, weights, tokens, down = ctx.saved_tensors
        chunks, config = ctx.chunks, ctx.config
        _, need_x, need_a, need_b, need_w = ctx.needs_input_grad[:5]
        in_features, out_features = x.shape[1], grad.shape[1]
        workspace = Workspace(x, chunks, max(in_features, out_features))
        grad_b = torch.zeros_like(lora_b) if need_b else None
        grad_a = torch.zeros_like(lora_a) if need_a and not config.shared_a else None
        grad_x = torch.zeros_like(x) if need_x and not config.shared_a else None
        grad_down = torch.empty_like(down)
        grad_w = down.new_empty(len(tokens)) if need_w else None
        for e, rows in chunks:
            grad_up = torch.index_select(grad, 0, tokens[rows], out=workspace.rows(rows, out_features))
            gate = weights[rows].unsqueeze(-1)
            if need_b:
                expert_b(grad_b, e, config).addmm_(grad_up.t(), down[rows] * gate)
            grad_scaled = grad_up @ expert_b(lora_b, e, config)
            if need_w:
                grad_w[rows] = (grad_scaled * down[rows]).sum(-1)
            torch.mul(grad_scaled, gate, out=grad_down[rows])
            if config.shared_a:
                continue
            if need_a:
                inputs = torch.index_select(x, 0, tokens[rows], out=workspace.rows(rows, in_features))
                expert_a(grad_a, e, config).addmm_(grad_down[rows].t(), inputs)
            if need_x:
                product = torch.mm(
                    grad_down[rows], expert_a(lora_a, e, config), out=workspace.rows(rows, in_features)
                )
                grad_x.index_add_(0, tokens[rows], product)
        if config.shared_a:
            per_token = grad_down.new_zeros(len(x), config.rank).index_add_(0, tokens, grad_down)
            grad_a = per_token.t() @ x if need_a else None
            grad_x = per_token @ lora_a if need_x else None
        return grad, grad_x, grad_a, grad_b, grad_w, None, None, None


CHUNK_BYTES = 8 * 2**20
"""The most bytes of rows `ExpertLoRA` gathers or multiplies at once: one workspace this size (or the
largest expert's rows, if smaller) per call, well below the 32 MB past which glibc takes an allocation
from the kernel (`ExpertLoRA`), and small enough that a chunk's gathered rows may still be in cache
when its GEMM reads them."""


def chunk_rows(width: int, element_size: int) -> int:
    """Rows of ``width`` elements per chunk (`CHUNK_BYTES`; at least one)."""
    return max(1, CHUNK_BYTES // (width * element_size))


def expert_chunks(groups: list[tuple[int, int]], rows: int) -> Iterator[tuple[int, slice]]:
    """Each expert with the slices of its pairs, at most ``rows`` pairs per slice."""
    start = 0
    for expert, end in groups:
        for first in range(start, end, rows):
            yield expert, slice(first, min(first + rows, end))
        start = end


def expert_a(lora_a: torch.Tensor, expert: int, config: CuMAConfig) -> torch.Tensor:
    """Expert ``expert``'s rows of A, a view (so gradients can be added into it)."""
    return lora_a[expert * config.rank : (expert + 1) * config.rank]


def expert_b(lora_b: torch.Tensor, expert: int, config: CuMAConfig) -> torch.Tensor:
    """Expert ``expert``'s columns of B, a view (so gradients can be added into it)."""
    return lora_b[:, expert * config.rank : (expert + 1) * config.rank]


class Workspace:
    """One flat buffer that every chunk's gathered rows and products reuse (`ExpertLoRA`)."""

    def __init__(self, like: torch.Tensor, chunks: list[tuple[int, slice]], width: int) -> None:
        most = max((rows.stop - rows.start for _, rows in chunks), default=0)
        self.buffer = like.new_empty(most * width)

    def rows(self, rows: slice, width: int) -> torch.Tensor:
        """A contiguous [len(rows), width] view at the start of the buffer."""
        return self.buffer[: (rows.stop - rows.start) * width].view(-1, width)


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
