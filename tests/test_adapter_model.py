"""CuMA PEFT models on tiny Llama and Qwen3 models: PEFT parity, conditioning, generation, padding, state."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from cuma.adapter import PRESETS, CuMAConfig, CuMAPeftModel, get_cuma_model
from cuma.encoder import DemographicEncoder
from cuma.tiny import tiny_model

DEMO = 16
FAMILIES = ["llama", "qwen3"]


def adapted(preset: str, family: str = "llama", **overrides: Any) -> CuMAPeftModel:
    """A tiny model with the preset's adapter and non-zero B, so the adapter changes the output."""
    config = CuMAConfig.from_preset(preset, **{"demographic_input_dim": DEMO, **overrides})
    model = get_cuma_model(tiny_model(family), config)
    torch.manual_seed(1)
    for layer in model.layers.values():
        nn.init.normal_(layer.cuma_B["default"], std=0.5)
    return model


def ids(batch: int = 2, length: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randint(4, 500, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_preset_equals_peft_lora(family: str) -> None:
    base = tiny_model(family)
    ours = get_cuma_model(copy.deepcopy(base), CuMAConfig.from_preset("lora"))
    peft = get_peft_model(
        base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    )
    pairs = []
    for name, layer in ours.layers.items():
        peft_layer = peft.base_model.model.get_submodule(name)
        nn.init.normal_(peft_layer.lora_B["default"].weight)
        with torch.no_grad():
            layer.cuma_A["default"].copy_(peft_layer.lora_A["default"].weight)
            layer.cuma_B["default"].copy_(peft_layer.lora_B["default"].weight)
        pairs += [
            (layer.cuma_A["default"], peft_layer.lora_A["default"].weight),
            (layer.cuma_B["default"], peft_layer.lora_B["default"].weight),
        ]
    tokens = ids()
    ours_logits = ours(tokens).logits
    peft_logits = peft(input_ids=tokens).logits
    ours_logits.square().mean().backward()
    peft_logits.square().mean().backward()
    with peft.disable_adapter():
        assert not torch.allclose(peft(input_ids=tokens).logits, peft_logits)
    torch.testing.assert_close(ours_logits, peft_logits, rtol=1e-5, atol=1e-6)
    for mine, theirs in pairs:
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("preset", "reads_profile"),
    [
        ("cuma", True),
        ("demographic-only", True),
        ("mixlora", False),
        ("hydralora", False),
        ("no-demographic", False),
    ],
)
def test_only_demographic_routers_react_to_the_profile(preset: str, reads_profile: bool) -> None:
    model = adapted(preset)
    tokens = ids()
    with model.record_routing() as rec:
        first = model(tokens, demographic_embeds=torch.randn(2, DEMO)).logits
        second = model(tokens, demographic_embeds=torch.randn(2, DEMO)).logits
    same_routing = all(torch.equal(rec.calls[0][k], rec.calls[1][k]) for k in rec.calls[0])
    assert same_routing is not reads_profile
    assert torch.equal(first, second) is not reads_profile


@pytest.mark.parametrize("family", FAMILIES)
def test_beam_search_routes_each_row_with_its_own_profile(family: str) -> None:
    model = adapted("cuma", family)
    tokens, embeds = ids(), torch.randn(2, DEMO)
    kwargs = dict(max_new_tokens=4, num_beams=3, num_return_sequences=2, do_sample=False)
    kwargs |= dict(return_dict_in_generate=True, output_scores=True, pad_token_id=3)
    batched = model.generate(tokens, demographic_embeds=embeds, **kwargs)
    for row in range(2):
        alone = model.generate(tokens[row : row + 1], demographic_embeds=embeds[row : row + 1], **kwargs)
        assert torch.equal(batched.sequences[2 * row : 2 * row + 2], alone.sequences)
        torch.testing.assert_close(batched.sequences_scores[2 * row : 2 * row + 2], alone.sequences_scores)
    swapped = model.generate(tokens[:1], demographic_embeds=embeds[1:], **kwargs)
    assert not torch.allclose(swapped.sequences_scores, batched.sequences_scores[:2])


def test_sampled_return_sequences_route_with_their_rows_profile() -> None:
    model = adapted("cuma")
    tokens, embeds = ids(), torch.randn(2, DEMO)
    with model.record_routing() as rec:
        model.generate(
            tokens, demographic_embeds=embeds, max_new_tokens=2, do_sample=True, num_return_sequences=3
        )
        model.generate(tokens, demographic_embeds=embeds, max_new_tokens=1, do_sample=False)
    expanded, single = rec.calls
    for name, weights in single.items():
        prompt = expanded[name][:, : tokens.shape[1]]
        assert prompt.shape[0] == 6
        torch.testing.assert_close(prompt, weights.repeat_interleave(3, dim=0)[:, : tokens.shape[1]])


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("family", FAMILIES)
def test_padded_batch_matches_each_row_alone(family: str, side: str) -> None:
    model = adapted("cuma", family)
    rows, embeds = [ids(1, 5, seed=1)[0], ids(1, 8, seed=2)[0]], torch.randn(2, DEMO)
    width = max(len(r) for r in rows)
    batch = torch.full((2, width), 3)
    mask = torch.zeros(2, width, dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        batch[i, span], mask[i, span] = row, 1
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    padded = model(batch, attention_mask=mask, position_ids=positions, demographic_embeds=embeds)
    for i, row in enumerate(rows):
        alone = model(row[None], demographic_embeds=embeds[i : i + 1])
        torch.testing.assert_close(padded.logits[i, mask[i].bool()], alone.logits[0], rtol=1e-4, atol=1e-5)
    # The shorter row alone, still padded: its pad tokens must not enter the aux loss.
    short = model(
        batch[:1], attention_mask=mask[:1], position_ids=positions[:1], demographic_embeds=embeds[:1]
    )
    torch.testing.assert_close(short.aux_loss, model(rows[0][None], demographic_embeds=embeds[:1]).aux_loss)


def test_left_padded_generate_gives_each_row_its_own_tokens() -> None:
    model = adapted("cuma")
    rows, embeds = [ids(1, 4, seed=3)[0], ids(1, 9, seed=4)[0]], torch.randn(2, DEMO)
    width = max(len(r) for r in rows)
    batch = torch.full((2, width), 3)
    mask = torch.zeros(2, width, dtype=torch.long)
    for i, row in enumerate(rows):
        batch[i, width - len(row) :], mask[i, width - len(row) :] = row, 1
    settings = dict(max_new_tokens=6, do_sample=False, pad_token_id=3)
    padded = model.generate(batch, attention_mask=mask, demographic_embeds=embeds, **settings)
    for i, row in enumerate(rows):
        alone = model.generate(row[None], demographic_embeds=embeds[i : i + 1], **settings)
        assert torch.equal(padded[i, width:], alone[0, len(row) :])


def test_aux_loss_moves_with_pad_tokens_when_they_are_unmasked() -> None:
    model = adapted("cuma")
    tokens, embeds = ids(1, 8), torch.randn(1, DEMO)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]])
    masked = model(tokens, attention_mask=mask, demographic_embeds=embeds).aux_loss
    unmasked = model(tokens, demographic_embeds=embeds).aux_loss
    assert not torch.allclose(masked, unmasked)


def test_aux_loss_gives_every_expert_a_gradient() -> None:
    model = adapted("cuma", top_k=1)
    out = model(ids(), demographic_embeds=torch.randn(2, DEMO))
    out.aux_loss.backward()
    for router in model.cuma_routers["default"].values():
        assert (router.head[-1].bias.grad != 0).all()
    assert out.aux_loss > 0


def test_aux_loss_is_zero_without_routers() -> None:
    model = adapted("lora")
    assert model(ids()).aux_loss.item() == 0.0


def test_shared_router_runs_once_per_block_with_demographics_once_per_sequence() -> None:
    model = adapted(
        "cuma", target_modules=("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "down_proj")
    )
    calls: list[str] = []
    demo_inputs: list[torch.Size] = []
    for key, router in model.cuma_routers["default"].items():
        router.register_forward_hook(lambda *_, key=key: calls.append(key))
        router.demographic_proj.register_forward_hook(lambda _m, args, _o: demo_inputs.append(args[0].shape))
    model(ids(2, 6), demographic_embeds=torch.randn(2, DEMO))
    assert len(model.cuma_routers["default"]) == 2 * 3  # per layer: q/k/v, gate/up, down
    assert sorted(calls) == sorted(model.cuma_routers["default"])
    assert all(shape == (2, DEMO) for shape in demo_inputs)


def test_no_batch_state_is_left_on_modules() -> None:
    model = adapted("cuma")
    before = {name: set(vars(m)) for name, m in model.named_modules()}
    model(ids(), demographic_embeds=torch.randn(2, DEMO))
    assert {name: set(vars(m)) for name, m in model.named_modules()} == before
    assert not any(layer._forward_pre_hooks for layer in model.layers.values())
    with pytest.raises(ValueError, match="pass demographic_embeds of shape"):
        model(ids())


def test_mismatched_embedding_rows_name_both_shapes() -> None:
    model = adapted("cuma")
    with pytest.raises(ValueError, match=r"\(4, 16\).*\(2, 6\)"):
        model(ids(), demographic_embeds=torch.randn(4, DEMO))
    with pytest.raises(ValueError, match=r"\[batch, 16\].*\(2, 7\)"):
        model(ids(), demographic_embeds=torch.randn(2, 7))


@pytest.mark.parametrize("preset", ["mixlora", "hydralora", "no-demographic", "lora"])
def test_configs_without_demographics_ignore_embeddings_but_check_their_rows(preset: str) -> None:
    model = adapted(preset)
    tokens = ids()
    torch.testing.assert_close(
        model(tokens).logits, model(tokens, demographic_embeds=torch.randn(2, 3)).logits
    )
    with pytest.raises(ValueError, match=r"\(5, 3\).*\(2, 6\)"):
        model(tokens, demographic_embeds=torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"\(1, 3\).*\(2, 6\)"):
        model.generate(tokens, demographic_embeds=torch.randn(1, 3), max_new_tokens=1, pad_token_id=3)
    with (
        model.disable_adapter(),
        pytest.raises(ValueError, match="one embedding row is needed per input row"),
    ):
        model(tokens, demographic_embeds=torch.randn(3, DEMO))


def test_return_dict_false_is_refused_before_the_model_runs() -> None:
    model = adapted("cuma")
    calls: list[int] = []
    model.get_base_model().register_forward_pre_hook(lambda *_: calls.append(1))
    with pytest.raises(TypeError, match="drop return_dict=False"):
        model(ids(), demographic_embeds=torch.randn(2, DEMO), return_dict=False)
    assert not calls


def test_disable_adapter_runs_the_bare_base_model() -> None:
    base = tiny_model()
    reference = copy.deepcopy(base)
    model = get_cuma_model(base, CuMAConfig.from_preset("cuma", demographic_input_dim=DEMO))
    for layer in model.layers.values():
        nn.init.normal_(layer.cuma_B["default"])
    tokens = ids()
    with model.disable_adapter():
        disabled = model(tokens)
    expected = reference(tokens).logits
    torch.testing.assert_close(disabled.logits, expected, rtol=0, atol=0)
    assert disabled.aux_loss.item() == 0.0
    assert not torch.allclose(model(tokens, demographic_embeds=torch.randn(2, DEMO)).logits, expected)


def test_record_routing_shapes_and_sparsity() -> None:
    model = adapted("cuma")
    with model.record_routing() as rec:
        model(ids(3, 5), demographic_embeds=torch.randn(3, DEMO))
    assert set(rec.weights) == set(model.layers)
    for weights in rec.weights.values():
        assert weights.shape == (3, 5, 8) and weights.device.type == "cpu"
        assert ((weights > 0).sum(-1) == 2).all()
    assert model._recorder is None


@pytest.fixture(scope="module")
def encoder() -> DemographicEncoder:
    return DemographicEncoder()


@pytest.mark.parametrize("layers", [1, 2])
def test_projection_learns_on_every_appearance_of_a_profile(encoder: DemographicEncoder, layers: int) -> None:
    """The encoder caches its frozen output; the projection must still learn when a profile comes back."""
    model = adapted(
        "cuma", demographic_input_dim=384, demographic_projection_layers=layers, demographic_dim=8
    )
    profiles = [{"country": "Peru", "age": 30}, {"country": "Ghana", "age": 58}]
    encoder.clear_cache()
    encoder_calls: list[int] = []
    hook = encoder.model.register_forward_hook(lambda *_: encoder_calls.append(1))
    try:
        first = encoder.encode(profiles)
        runs = len(encoder_calls)
        second = encoder.encode(profiles)
    finally:
        hook.remove()
    assert runs > 0 and len(encoder_calls) == runs, "the second encode is a cache hit"
    assert torch.equal(first, second) and first.shape == (2, 384) and not second.requires_grad
    for embeds in (first, second):
        model.zero_grad()
        out = model(ids(), demographic_embeds=embeds)
        (out.logits.square().mean() + out.aux_loss).backward()
        for param in model.parameter_groups()["projection"]:
            assert param.grad is not None and param.grad.abs().sum() > 0


def test_only_adapter_parameters_train() -> None:
    model = adapted("cuma", demographic_projection_layers=1)
    groups = model.parameter_groups()
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for params in groups.values() for p in params}
    assert all(groups.values())


def test_parameter_report_reproduces_the_papers_percentages() -> None:
    """Reference notes §1.7: Qwen3-8B, q_proj+v_proj, E=8, demographic dim 1024."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    config = Qwen3Config(
        vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=False,
    )  # fmt: skip
    with torch.device("meta"):
        qwen = AutoModelForCausalLM.from_config(config)
    cases = [
        ("lora", {}, 3_833_856, "0.047"),
        ("cuma", {"router_hidden_size": 512}, 125_208_864, "1.529"),
        ("cuma", {"rank": 64, "alpha": 128, "router_hidden_size": 512}, 339_904_800, "4.150"),
        ("no-demographic", {"rank": 64, "router_hidden_size": 512, "shared_a": True}, 188_909_856, "2.306"),
    ]
    for preset, overrides, trainable, percent in cases:
        base = copy.deepcopy(qwen)
        report = get_cuma_model(base, CuMAConfig.from_preset(preset, demographic_input_dim=1024, **overrides))
        report = report.parameter_report()
        assert report.base_parameters == 8_190_735_360
        assert (report.trainable, f"{report.percent():.3f}") == (trainable, percent)
        assert "trainable total" in report.table()


def test_every_preset_builds_on_both_families() -> None:
    for family in FAMILIES:
        for preset in PRESETS:
            out = adapted(preset, family)(
                ids(), attention_mask=torch.ones(2, 6), demographic_embeds=torch.randn(2, DEMO)
            )
            assert out.logits.shape == (2, 6, 512) and out.aux_loss.dim() == 0


def test_incremental_forward_with_a_cache_uses_the_newest_mask_columns() -> None:
    model = adapted("cuma")
    tokens, embeds, mask = ids(2, 8), torch.randn(2, DEMO), torch.ones(2, 8, dtype=torch.long)
    full = model(tokens, attention_mask=mask, demographic_embeds=embeds)
    prefix = model(tokens[:, :5], attention_mask=mask[:, :5], demographic_embeds=embeds, use_cache=True)
    step = model(tokens[:, 5:], attention_mask=mask, cache=prefix.cache, demographic_embeds=embeds)
    torch.testing.assert_close(step.logits, full.logits[:, 5:], rtol=1e-4, atol=1e-5)
    assert step.aux_loss > 0


def test_router_z_loss_adds_to_the_aux_loss() -> None:
    tokens, embeds = ids(), torch.randn(2, DEMO)
    plain = adapted("cuma")(tokens, demographic_embeds=embeds).aux_loss
    with_z = adapted("cuma", router_z_loss_weight=0.1)(tokens, demographic_embeds=embeds).aux_loss
    assert with_z > plain
