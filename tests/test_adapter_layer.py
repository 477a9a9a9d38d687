"""The vectorised layer against a deliberately naive per-token, per-expert loop (outputs and gradients)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from cuma.adapter import CuMAConfig, MixtureLoRALinear, Router, RoutingState
from cuma.adapter.router import router_aux_loss, routing_weights, use_routing

ADAPTER = "default"

IN, OUT, DEMO = 12, 10, 6

CASES = [
    ("lora", {}),
    ("hydralora", {}),
    ("hydralora", {"routing": "topk", "top_k": 3}),
    ("mixlora", {}),
    ("cuma", {}),
    ("cuma", {"top_k_weights": "softmax-of-probs"}),
    ("cuma", {"shared_a": True}),
    ("cuma", {"top_k": 1, "router_layers": 3}),
    ("cuma-soft", {}),
    ("cuma-soft", {"shared_a": True}),
    ("demographic-only", {}),
    ("no-demographic", {"top_k_weights": "softmax-of-probs"}),
]


def naive_router(
    router: Router, h: torch.Tensor, d: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token's router (logits, softmax) from the concatenated [h ; d], as the paper writes it."""
    c = router.config
    parts = [(router.hidden_proj, h)] if "hidden" in c.router_inputs else []
    parts += [(router.demographic_proj, d)] if "demographic" in c.router_inputs else []
    weight = torch.cat([proj.weight for proj, _ in parts], dim=1)
    z = weight @ torch.cat([v for _, v in parts]) + router.bias
    for linear in router.head:
        z = linear.weight @ torch.relu(z) + linear.bias
    return z, torch.softmax(z, dim=0)


def naive_top_k(p: torch.Tensor, k: int) -> list[int]:
    return sorted(range(len(p)), key=lambda e: -p[e].item())[:k]


def naive_forward(
    layer: MixtureLoRALinear, router: Router | None, x: torch.Tensor, d: torch.Tensor | None
) -> torch.Tensor:
    """Token by token: route on [h ; d], pick experts by Python sorting, add each B_e A_e x."""
    c = layer.cuma_config[ADAPTER]
    lora_a, lora_b = layer.cuma_A[ADAPTER], layer.cuma_B[ADAPTER]
    rows = []
    for b in range(x.shape[0]):
        for s in range(x.shape[1]):
            h = x[b, s]
            y = layer.base_layer.weight @ h + layer.base_layer.bias
            weights = {0: torch.tensor(1.0, dtype=x.dtype)}
            if router is not None:
                _, p = naive_router(router, h, None if d is None else d[b])
                if c.routing == "soft":
                    weights = {e: p[e] for e in range(c.num_experts)}
                else:
                    chosen = naive_top_k(p, c.top_k)
                    picked = torch.stack([p[e] for e in chosen])
                    if c.top_k == 1:  # Switch: the raw probability
                        w = picked
                    elif c.top_k_weights == "normalize":
                        w = picked / picked.sum()
                    else:
                        w = torch.softmax(picked, 0)
                    weights = dict(zip(chosen, w, strict=True))
            for e, w in weights.items():
                a = lora_a if c.shared_a else lora_a[e * c.rank : (e + 1) * c.rank]
                b_e = lora_b[:, e * c.rank : (e + 1) * c.rank]
                y = y + c.scaling * w * (b_e @ (a @ h))
            rows.append(y)
    return torch.stack(rows).view(*x.shape[:-1], -1)


def build(preset: str, overrides: dict[str, Any]) -> tuple[CuMAConfig, MixtureLoRALinear, nn.ModuleDict]:
    experts = {} if preset == "lora" else {"num_experts": 4}
    config = CuMAConfig.from_preset(
        preset, rank=3, router_hidden_size=5, demographic_input_dim=DEMO, **experts, **overrides
    )
    torch.manual_seed(0)
    base = nn.Linear(IN, OUT).double()
    routers = nn.ModuleDict({"r": Router(config, IN)} if config.has_router else {}).double()
    layer = MixtureLoRALinear(base, "layer")
    layer.update_layer(ADAPTER, config, "r" if config.has_router else None)
    layer.double()
    nn.init.normal_(layer.cuma_B[ADAPTER])
    return config, layer, routers


def grads(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    out = [t.grad.clone() for t in tensors]
    for t in tensors:
        t.grad = None
    return out


@pytest.mark.parametrize(("preset", "overrides"), CASES)
def test_layer_matches_naive_loop(preset: str, overrides: dict[str, Any]) -> None:
    config, layer, routers = build(preset, overrides)
    x = torch.randn(2, 5, IN, dtype=torch.float64, requires_grad=True)
    d = torch.randn(2, DEMO, dtype=torch.float64)
    probe = torch.randn(2, 5, OUT, dtype=torch.float64)
    params = [x, layer.cuma_A[ADAPTER], layer.cuma_B[ADAPTER], *routers.parameters()]

    state = RoutingState(routers, config, demographic=d) if config.has_router else None
    with use_routing(state):
        fast = layer(x)
    (fast * probe).sum().backward()
    fast_grads = grads(params)

    slow = naive_forward(layer, routers["r"] if config.has_router else None, x, d)
    (slow * probe).sum().backward()
    slow_grads = grads(params)

    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-10)
    for fast_grad, slow_grad in zip(fast_grads, slow_grads, strict=True):
        torch.testing.assert_close(fast_grad, slow_grad, rtol=1e-9, atol=1e-10)
    router_grads = fast_grads[3:]
    if not config.has_router:
        assert not router_grads
    else:  # top_k=1 included: the single gate is the raw probability, so the router learns from the task
        assert all(g.abs().sum() > 0 for g in router_grads)


@pytest.mark.parametrize(
    ("preset", "overrides"),
    [
        ("cuma", {}),
        ("cuma", {"top_k": 3, "router_z_loss_weight": 0.2}),
        ("cuma-soft", {}),
        ("demographic-only", {}),
        ("hydralora", {"router_z_loss_weight": 0.2}),
    ],
)
def test_aux_loss_is_the_switch_formula_over_real_tokens(preset: str, overrides: dict[str, Any]) -> None:
    """N * sum_e f_e P_e (+ z-loss), token by token: f_e from the selected experts (top-1 under soft
    routing), P_e the mean full softmax, both over the non-padding tokens only."""
    config, _, routers = build(preset, {"load_balancing_weight": 0.3, **overrides})
    x = torch.randn(3, 5, IN, dtype=torch.float64)
    d = torch.randn(3, DEMO, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [1, 1, 0, 0, 0]])
    state = RoutingState(routers, config, demographic=d, attention_mask=mask)
    state.gates("r", x, "layer")
    (loss,) = state.aux_losses

    k = 1 if config.routing == "soft" else config.top_k
    f = torch.zeros(config.num_experts, dtype=torch.float64)
    p_sum = torch.zeros(config.num_experts, dtype=torch.float64)
    z_sum, tokens = 0.0, 0
    for b, s in mask.nonzero().tolist():
        z, p = naive_router(routers["r"], x[b, s], d[b])
        for e in naive_top_k(p, k):
            f[e] += 1 / k
        p_sum += p
        z_sum += torch.logsumexp(z, dim=0) ** 2
        tokens += 1
    balance = config.num_experts * ((f / tokens) * (p_sum / tokens)).sum()
    expected = 0.3 * balance + config.router_z_loss_weight * z_sum / tokens
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)

    unmasked = RoutingState(routers, config, demographic=d)
    unmasked.gates("r", x, "layer")
    assert not torch.isclose(unmasked.aux_losses[0], loss), "the mask must matter for this batch"


def test_selected_experts_count_even_when_their_gate_underflows() -> None:
    config = CuMAConfig.from_preset("cuma", num_experts=2, top_k=2, load_balancing_weight=1.0)
    logits = torch.tensor([[[0.0, -200.0], [-200.0, 0.0]]])  # float32 softmax: exactly 1 and 0
    gates, probs, selected = routing_weights(logits, config)
    assert (gates > 0).sum() == 2, "one of each token's two gates is zero"
    loss = router_aux_loss(logits, probs, selected, torch.ones(1, 2), config)
    # Both experts fill one of each token's two slots: f = P = (1/2, 1/2), so N * sum f P = 1.
    torch.testing.assert_close(loss, torch.tensor(1.0))


def test_topk_gates_have_k_nonzeros_and_sum_to_one() -> None:
    config, _, routers = build("cuma", {})
    state = RoutingState(routers, config, demographic=torch.randn(3, DEMO, dtype=torch.float64))
    gates = state.gates("r", torch.randn(3, 7, IN, dtype=torch.float64), "layer")
    assert ((gates > 0).sum(-1) == config.top_k).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(3, 7, dtype=gates.dtype))


def test_dropout_is_applied_once_to_the_input() -> None:
    config, layer, _ = build("lora", {"dropout": 0.5})
    layer.train()
    x = torch.randn(4, 6, IN, dtype=torch.float64)
    torch.manual_seed(1)
    fast = layer(x)
    torch.manual_seed(1)
    dropped = nn.functional.dropout(x, 0.5, training=True)
    lora_a, lora_b = layer.cuma_A[ADAPTER], layer.cuma_B[ADAPTER]
    expected = layer.base_layer(x) + config.scaling * dropped @ lora_a.t() @ lora_b.t()
    torch.testing.assert_close(fast, expected)


def test_router_layer_without_routing_state_is_an_error() -> None:
    _, layer, _ = build("cuma", {})
    with pytest.raises(RuntimeError, match="has a router but was called outside a CuMA model call"):
        layer(torch.randn(1, 2, IN, dtype=torch.float64))


def test_bf16_autocast_runs_and_keeps_float32_parameters() -> None:
    config = CuMAConfig.from_preset("cuma", demographic_input_dim=DEMO)
    layer = MixtureLoRALinear(nn.Linear(IN, OUT), "layer")
    layer.update_layer(ADAPTER, config, "r")
    routers = nn.ModuleDict({"r": Router(config, IN)})
    x = torch.randn(2, 3, IN, requires_grad=True)
    state = RoutingState(routers, config, demographic=torch.randn(2, DEMO))
    with torch.autocast("cpu", dtype=torch.bfloat16), use_routing(state):
        y = layer(x)
    y.float().sum().backward()
    lora_a = layer.cuma_A[ADAPTER]
    assert y.dtype == torch.bfloat16
    assert lora_a.dtype == torch.float32 and lora_a.grad.dtype == torch.float32


def test_a_shared_router_runs_once_per_input_even_through_an_alias() -> None:
    """q, k and v share a router that runs once per block input: an alias of the same input (DeepSpeed
    ZeRO-3 hands each projection its own) reuses the gates and adds no second aux loss; another tensor of
    equal values, or the same memory written in between, runs the router again."""
    config, _, routers = build("cuma", {"load_balancing_weight": 0.3})
    x = torch.randn(2, 5, IN, dtype=torch.float64)
    state = RoutingState(routers, config, demographic=torch.randn(2, DEMO, dtype=torch.float64))
    gates = state.gates("r", x, "q_proj")
    assert state.gates("r", x.view_as(x), "v_proj") is gates
    assert len(state.aux_losses) == 1
    state.gates("r", x.clone(), "k_proj")
    assert len(state.aux_losses) == 2
    y = torch.randn(2, 5, IN, dtype=torch.float64)
    before = state.gates("r", y, "q_proj")
    y.add_(1.0)
    after = state.gates("r", y.view_as(y), "v_proj")
    assert len(state.aux_losses) == 4 and not torch.equal(before, after)
    with torch.inference_mode():  # no version counter: the same object only
        z = torch.randn(2, 5, IN, dtype=torch.float64)
        assert state.gates("r", z, "q_proj") is state.gates("r", z, "v_proj")
        state.gates("r", z.view_as(z), "k_proj")
    assert len(state.aux_losses) == 6
