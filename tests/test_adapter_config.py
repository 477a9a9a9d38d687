"""CuMAConfig presets and the errors that invalid settings raise at construction."""

from __future__ import annotations

import pytest

from cuma.adapter import PRESETS, CuMAConfig, get_cuma_model
from cuma.tiny import tiny_model


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"top_k": 9}, r"top_k=9: top-k routing needs 1 <= top_k <= num_experts \(8\)"),
        ({"rank": 0}, "rank=0: must be an integer of at least 1"),
        ({"routing": "soft"}, "top_k=2: routing='soft' uses no top-k; set top_k=None"),
        ({"routing": "dense", "top_k": None}, "routing='dense': expected one of"),
        ({"top_k_weights": "softmax"}, "top_k_weights='softmax'"),
        ({"router_inputs": ()}, "needs at least one of"),
        ({"router_inputs": ("hidden", "profile")}, "router_inputs=.*expected distinct entries"),
        ({"dropout": 1.0}, r"dropout=1.0: must be in \[0, 1\)"),
        ({"demographic_projection_layers": 3}, "expected 0, 1 or 2"),
        ({"demographic_dim": 64}, "identity projection"),
        ({"router_sharing": (("q_proj", "k_proj"), ("k_proj",))}, "at most one sharing group"),
        ({"target_modules": ()}, "target_modules=.*at least one"),
        ({"load_balancing_weight": -1.0}, "must be non-negative"),
        ({"num_experts": 1, "top_k": 1}, "needs at least 2 experts"),
    ],
)
def test_invalid_settings_raise_at_construction(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CuMAConfig.from_preset("cuma", **overrides)


def test_lora_preset_has_no_router_and_rejects_more_experts() -> None:
    config = CuMAConfig.from_preset("lora")
    assert (config.num_experts, config.has_router, config.router_inputs) == (1, False, ())
    with pytest.raises(ValueError, match="exactly one expert"):
        CuMAConfig.from_preset("lora", num_experts=2)


def test_unknown_preset_and_field_are_named() -> None:
    with pytest.raises(ValueError, match="unknown CuMA preset 'moe'"):
        CuMAConfig.from_preset("moe")
    with pytest.raises(
        ValueError, match=r"unknown CuMAConfig field\(s\) \['experts'\] in overrides for preset"
    ):
        CuMAConfig.from_preset("cuma", experts=4)
    with pytest.raises(ValueError, match=r"unknown CuMAConfig field\(s\) \['experts', 'layers'\]"):
        CuMAConfig.from_dict({"rank": 4, "layers": 2, "experts": 2})


def test_presets_differ_where_the_paper_says() -> None:
    cuma, soft = CuMAConfig.from_preset("cuma"), CuMAConfig.from_preset("cuma-soft")
    assert (cuma.num_experts, cuma.top_k, cuma.rank, cuma.alpha, cuma.router_hidden_size) == (
        8,
        2,
        8,
        16,
        256,
    )
    assert cuma.target_modules == ("q_proj", "v_proj") and not cuma.shared_a
    assert (soft.routing, soft.top_k) == ("soft", None)
    preset = {name: CuMAConfig.from_preset(name) for name in PRESETS}
    assert preset["hydralora"].shared_a and not preset["mixlora"].shared_a
    assert preset["demographic-only"].router_inputs == ("demographic",)
    assert preset["no-demographic"].router_inputs == preset["mixlora"].router_inputs == ("hidden",)


def test_lists_from_json_become_tuples_and_round_trip() -> None:
    config = CuMAConfig.from_preset("cuma", target_modules=["q_proj"], router_sharing=[["q_proj", "v_proj"]])
    assert config.target_modules == ("q_proj",) and config.router_sharing == (("q_proj", "v_proj"),)
    assert CuMAConfig.from_dict(config.to_dict()) == config


def test_targets_that_match_nothing_are_rejected_with_the_available_names() -> None:
    config = CuMAConfig.from_preset("cuma", target_modules=("q_proj", "c_attn"))
    with pytest.raises(ValueError, match=r"'c_attn' matches no module of LlamaForCausalLM.*'v_proj'"):
        get_cuma_model(tiny_model(), config)


def test_targets_that_are_not_linear_are_rejected() -> None:
    with pytest.raises(
        ValueError, match=r"matches model.layers.0.self_attn, a LlamaAttention, not nn.Linear"
    ):
        get_cuma_model(tiny_model(), CuMAConfig.from_preset("cuma", target_modules=("self_attn",)))


def test_a_model_cannot_be_adapted_twice() -> None:
    model = get_cuma_model(tiny_model(), CuMAConfig.from_preset("lora"))
    with pytest.raises(ValueError, match="already carries CuMA layers"):
        get_cuma_model(model.base_model, CuMAConfig.from_preset("lora"))


def test_qwen_and_llama_names_work_for_all_projections() -> None:
    targets = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    for family in ("llama", "qwen3"):
        model = get_cuma_model(
            tiny_model(family, num_layers=2), CuMAConfig.from_preset("mixlora", target_modules=targets)
        )
        assert len(model.base_model.layers) == 2 * 7
        assert len(model.base_model.cuma_routers["default"]) == 2 * 4  # q/k/v shared, o, gate/up shared, down
