"""Dense and sparse expert dispatch: each against a naive per-token loop, each other, and DDP."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cuma.adapter import CuMAConfig, MixtureLoRALinear, Router, RoutingState
from cuma.adapter.dispatch import (
    SPARSE_FORMS,
    SPARSE_MIN_SAVED_COLUMNS,
    SPARSE_MIN_TOKENS,
    add_grouped_mm,
    choose_dispatch,
    chunk_rows,
    expert_chunks,
)
from cuma.adapter.router import use_routing

ADAPTER = "default"
IN, OUT, DEMO, RANK = 16, 8, 6, 4  # multiples of 4: grouped_mm's 16-byte rows in float32

TOPK_CASES = [
    ("cuma", {}),
    ("cuma", {"top_k": 1}),
    ("cuma", {"top_k": 3, "top_k_weights": "softmax-of-probs"}),
    ("cuma", {"shared_a": True}),
    ("mixlora", {}),
    ("demographic-only", {}),
]


class Block(nn.Module):
    """One adapted projection with its router, called as CuMAModel calls it (per-call routing state)."""

    def __init__(self, config: CuMAConfig) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.config = config
        self.routers = nn.ModuleDict({"r": Router(config, IN)})
        self.layer = MixtureLoRALinear(nn.Linear(IN, OUT), "block.q_proj")
        self.layer.update_layer(ADAPTER, config, "r")
        nn.init.normal_(self.layer.cuma_B[ADAPTER])

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        with use_routing(RoutingState(self.routers, self.config, demographic=d)):
            return self.layer(x)


def make(preset: str, overrides: dict[str, Any], dispatch: str) -> Block:
    settings = {"rank": RANK, "num_experts": 4, "router_hidden_size": 5, **overrides}
    config = CuMAConfig.from_preset(preset, demographic_input_dim=DEMO, dispatch=dispatch, **settings)
    return Block(config)


def naive(block: Block, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Token by token: the block's own gates, then only the experts with a nonzero gate, one at a time."""
    layer, c = block.layer, block.config
    gates = RoutingState(block.routers, c, demographic=d).gates("r", x, "naive").expand(*x.shape[:-1], -1)
    lora_a, lora_b = layer.cuma_A[ADAPTER], layer.cuma_B[ADAPTER]
    rows = []
    for b in range(x.shape[0]):
        for s in range(x.shape[1]):
            h = x[b, s]
            y = layer.base_layer(h)
            for e in gates[b, s].nonzero().flatten().tolist():
                a = lora_a if c.shared_a else lora_a[e * c.rank : (e + 1) * c.rank]
                y = y + c.scaling * gates[b, s, e] * (lora_b[:, e * c.rank : (e + 1) * c.rank] @ (a @ h))
            rows.append(y)
    return torch.stack(rows).view(*x.shape[:-1], OUT)


def run(
    block: Block, x: torch.Tensor, d: torch.Tensor, probe: torch.Tensor, fn: Callable | None = None
) -> list[torch.Tensor]:
    """The output and the gradients of the input, A, B and every router parameter."""
    x = x.detach().requires_grad_(True)
    out = (fn or block)(x, d)
    (out * probe).sum().backward()
    params = [block.layer.cuma_A[ADAPTER], block.layer.cuma_B[ADAPTER], *block.routers.parameters()]
    return [out.detach(), x.grad, *(p.grad for p in params)]


def inputs(batch: int = 3, seq: int = 7) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    return torch.randn(batch, seq, IN), torch.randn(batch, DEMO), torch.randn(batch, seq, OUT)


FORMS = ["dense", "sparse", "sparse-grouped-mm"]
"""Each form `MixtureLoRALinear` can compute: dense, sparse as on CPU (one expert at a time) and sparse as
on CUDA (grouped_mm), which CPU tests reach by swapping `SPARSE_FORMS`."""


def use_form(form: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The ``CuMAConfig.dispatch`` that computes ``form`` on CPU."""
    if form == "sparse-grouped-mm":
        monkeypatch.setitem(SPARSE_FORMS, "cpu", add_grouped_mm)
        return "sparse"
    return form


@pytest.mark.parametrize(("preset", "overrides"), TOPK_CASES)
@pytest.mark.parametrize("form", FORMS)
def test_each_form_matches_the_naive_loop(
    preset: str, overrides: dict[str, Any], form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the loop in float64, so the tolerance bounds the fast form's own float32 rounding."""
    block = make(preset, overrides, use_form(form, monkeypatch))
    x, d, probe = inputs()
    fast = run(block, x, d, probe)
    exact = copy.deepcopy(block).double()
    slow = run(exact, x.double(), d.double(), probe.double(), fn=lambda x, d: naive(exact, x, d))
    for got, expected in zip(fast, slow, strict=True):
        torch.testing.assert_close(got, expected.float(), rtol=1e-5, atol=1e-5)


def test_expert_chunks_split_each_experts_pairs_and_cover_every_pair_once() -> None:
    chunks = list(expert_chunks([(0, 5), (2, 6), (3, 13)], rows=3))
    assert chunks == [
        (0, slice(0, 3)),
        (0, slice(3, 5)),
        (2, slice(5, 6)),
        (3, slice(6, 9)),
        (3, slice(9, 12)),
        (3, slice(12, 13)),
    ]


@pytest.mark.parametrize(("preset", "overrides"), [("cuma", {}), ("cuma", {"shared_a": True})])
def test_the_cpu_sparse_form_in_chunks_of_three_rows_matches_the_naive_loop(
    preset: str, overrides: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every expert's pairs split into several chunks that share one workspace (three rows of IN floats)."""
    monkeypatch.setattr("cuma.adapter.dispatch.CHUNK_BYTES", 3 * IN * 4)
    assert chunk_rows(IN, 4) == 3
    block = make(preset, overrides, "sparse")
    x, d, probe = inputs()
    fast = run(block, x, d, probe)
    exact = copy.deepcopy(block).double()
    slow = run(exact, x.double(), d.double(), probe.double(), fn=lambda x, d: naive(exact, x, d))
    for got, expected in zip(fast, slow, strict=True):
        torch.testing.assert_close(got, expected.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("preset", "overrides"), [*TOPK_CASES, ("cuma", {"dropout": 0.4})])
@pytest.mark.parametrize("form", FORMS[1:])
def test_sparse_equals_dense_outputs_and_gradients(
    preset: str, overrides: dict[str, Any], form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, d, probe = inputs()
    results = []
    for dispatch in ("dense", use_form(form, monkeypatch)):
        block = make(preset, overrides, dispatch).train()
        torch.manual_seed(2)  # the same dropout mask for both forms
        results.append(run(block, x, d, probe))
    for dense, sparse in zip(*results, strict=True):
        torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)
    assert all(g.abs().sum() > 0 for g in results[1][4:]), "the router learns through the sparse form"


def test_soft_routing_under_auto_is_dense_and_matches_the_naive_loop() -> None:
    """At a rank where top-k routing would go sparse, soft routing (every expert weighted) stays dense."""
    block = make("cuma-soft", {"rank": 64, "num_experts": 8}, "auto")
    top_2 = CuMAConfig.from_preset("cuma", rank=64, num_experts=8)
    assert choose_dispatch(top_2, IN, OUT, torch.float32, SPARSE_MIN_TOKENS) == "sparse"
    assert choose_dispatch(block.config, IN, OUT, torch.float32, SPARSE_MIN_TOKENS) == "dense"
    x, d, probe = inputs()
    fast = run(block, x, d, probe)
    block.zero_grad()
    slow = run(block, x, d, probe, fn=lambda x, d: naive(block, x, d))
    for got, expected in zip(fast, slow, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("form", FORMS[1:])
def test_sparse_equals_dense_in_bf16_autocast(form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    x, d, probe = inputs()
    results = []
    for dispatch in ("dense", use_form(form, monkeypatch)):
        block = make("cuma", {"rank": 8}, dispatch)  # multiples of 8: grouped_mm's bf16 rows
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results.append(run(block, x, d, probe))
    for dense, sparse in zip(*results, strict=True):
        torch.testing.assert_close(sparse.float(), dense.float(), rtol=2e-2, atol=2e-2)


def routed_to_first_experts(block: Block) -> Block:
    """Make the router's last bias send every token to experts 0..k-1."""
    with torch.no_grad():
        block.routers["r"].head[-1].bias.copy_(torch.tensor([50.0, 40.0, -50.0, -50.0]))
    return block


@pytest.mark.parametrize("form", FORMS)
def test_unselected_experts_get_exact_zero_gradients_not_none(
    form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = routed_to_first_experts(make("cuma", {}, use_form(form, monkeypatch)))
    x, d, probe = inputs()
    _, _, grad_a, grad_b, *_ = run(block, x, d, probe)
    used = 2 * RANK  # experts 0 and 1
    assert grad_a[:used].abs().sum() > 0 and grad_b[:, :used].abs().sum() > 0
    assert torch.equal(grad_a[used:], torch.zeros_like(grad_a[used:]))
    assert torch.equal(grad_b[:, used:], torch.zeros_like(grad_b[:, used:]))


@pytest.mark.parametrize("dispatch", ["dense", "sparse"])
def test_ddp_without_find_unused_parameters_survives_a_batch_routed_to_one_expert(
    dispatch: str, tmp_path: Path
) -> None:
    """DDP raises on the second step if a parameter got no gradient in the first; the experts live in one
    A and one B per adapter, so an unselected expert never leaves the graph."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        block = routed_to_first_experts(make("cuma", {"top_k": 1}, dispatch))
        model = DistributedDataParallel(block, find_unused_parameters=False)
        x, d, probe = inputs()
        for _ in range(3):
            (model(x, d) * probe).sum().backward()
        assert all(p.grad is not None for p in block.parameters() if p.requires_grad)

        block.unused = nn.Parameter(torch.zeros(1))  # control: a parameter outside the graph does hang DDP
        model = DistributedDataParallel(block, find_unused_parameters=False)
        (model(x, d) * probe).sum().backward()
        with pytest.raises(RuntimeError, match="finished reduction in the prior iteration"):
            model(x, d)
    finally:
        dist.destroy_process_group()


def config(**overrides: Any) -> CuMAConfig:
    return CuMAConfig.from_preset("cuma", **overrides)


def test_auto_rule_keeps_small_ranks_and_short_calls_dense_and_trains_the_papers_rank_sparse() -> None:
    assert (8 - 2) * 8 < SPARSE_MIN_SAVED_COLUMNS <= (8 - 2) * 64
    tokens = SPARSE_MIN_TOKENS
    assert choose_dispatch(config(rank=8), 2048, 2048, torch.float32, tokens) == "dense"
    assert choose_dispatch(config(rank=64), 4096, 1024, torch.float32, tokens) == "sparse"
    assert choose_dispatch(config(rank=64), 4096, 1024, torch.bfloat16, tokens) == "sparse"
    assert choose_dispatch(config(rank=64), 4096, 1024, torch.bfloat16, tokens - 1) == "dense"  # decoding
    assert choose_dispatch(config(rank=64, dispatch="dense"), 4096, 1024, torch.float32, tokens) == "dense"
    assert choose_dispatch(config(rank=8, dispatch="sparse"), 4096, 1024, torch.float32, 1) == "sparse"


@pytest.mark.parametrize(
    ("overrides", "in_features", "dtype"),
    [
        ({"routing": "soft", "top_k": None}, 4096, torch.float32),  # every expert is used
        ({"top_k": 8}, 4096, torch.float32),
        ({}, 4098, torch.float32),  # rows not 16-byte aligned
        ({"rank": 68}, 4096, torch.bfloat16),  # 68 bf16 = 136 bytes
        ({}, 4096, torch.float64),  # grouped_mm has no float64
    ],
)
def test_auto_is_dense_where_sparse_cannot_run_and_forcing_sparse_there_names_the_layer(
    overrides: dict[str, Any], in_features: int, dtype: torch.dtype
) -> None:
    settings = {"rank": 64, **overrides}
    assert choose_dispatch(config(**settings), in_features, 1024, dtype, SPARSE_MIN_TOKENS) == "dense"
    with pytest.raises(ValueError, match=r"model\.q_proj: CuMAConfig\.dispatch='sparse' needs"):
        choose_dispatch(config(**settings, dispatch="sparse"), in_features, 1024, dtype, 1, "model.q_proj")


def test_dispatch_is_validated_and_old_configs_without_it_load_as_auto() -> None:
    with pytest.raises(ValueError, match=r"CuMAConfig.dispatch='fast': expected one of"):
        config(dispatch="fast")
    settings = config().settings()
    del settings["dispatch"]  # an adapter_config.json written before the field existed
    assert CuMAConfig.from_dict(settings).dispatch == "auto"


def test_state_dict_keys_do_not_depend_on_the_dispatch() -> None:
    dense, sparse = (make("cuma", {}, dispatch) for dispatch in ("dense", "sparse"))
    dense_state, sparse_state = dense.state_dict(), sparse.state_dict()
    assert list(dense_state) == list(sparse_state)
    assert all(torch.equal(dense_state[key], sparse_state[key]) for key in dense_state)
