"""The method registry: names, what each method sees, building, one training step each, save/load."""

import dataclasses

import pytest
import torch
from accelerate.state import AcceleratorState

from cuma.adapter import ParameterReport
from cuma.config import ExperimentConfig
from cuma.methods import METHODS, build_method, check_methods, load_trained, persona_in_prompt
from cuma.quick import RandomProfileEncoder
from cuma.tiny import tiny_model
from cuma.train import train
from train_toys import run, toy_collate, toy_config, toy_method, toy_rows, weights

TRAINABLE = [name for name, spec in METHODS.items() if spec.trainable]
PROMPTING = [name for name, spec in METHODS.items() if spec.kind == "prompt"]


def toy_batch():
    batch = toy_collate(toy_rows(3))
    return batch["input_ids"], batch["attention_mask"], batch["demographic_embeds"]


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown method 'lorra'.*cuma.*no-demographic"):
        check_methods(["cuma", "lorra"])
    with pytest.raises(ValueError, match="unknown method 'lorra'"):
        build_method("lorra", tiny_model(), ExperimentConfig())


def test_overrides_for_an_unknown_method_are_an_error():
    with pytest.raises(ValueError, match=r"adapter_overrides\.kuma"):
        check_methods(["cuma"], ExperimentConfig(adapter_overrides={"kuma": {"rank": 4}}))


def test_who_sees_the_persona():
    on = ExperimentConfig()
    off = dataclasses.replace(on, data=dataclasses.replace(on.data, persona_in_prompt=False))
    assert not persona_in_prompt("base", on) and persona_in_prompt("persona", off)
    assert persona_in_prompt("few-shot", off)
    for name in TRAINABLE:
        assert persona_in_prompt(name, on) and not persona_in_prompt(name, off)


@pytest.mark.parametrize("name", TRAINABLE)
def test_each_trainable_method_takes_a_training_step(tmp_path, name):
    config = toy_config(max_steps=1)
    fresh = toy_method(name, config)
    prepared, result = run(name, config, tmp_path)
    assert prepared.trainable and result.global_step == 1
    before, after = weights(fresh), weights(prepared)
    assert any(not torch.equal(before[key], after[key]) for key in before)
    out = prepared(*toy_batch())
    assert out.logits.shape[:2] == toy_batch()[0].shape and out.aux_loss.ndim == 0
    report = prepared.parameter_report()
    assert isinstance(report, ParameterReport)
    assert report.trainable == sum(p.numel() for p in prepared.trainable_parameters().values()) > 0


def test_only_full_fine_tuning_changes_base_weights(tmp_path):
    base_before = tiny_model().state_dict()
    for name in ("lora", "prefix", "full"):
        prepared, _ = run(name, toy_config(max_steps=1), tmp_path / name)
        embed = next(v for k, v in prepared.named_parameters() if k.endswith("embed_tokens.weight"))
        assert torch.equal(embed, base_before["model.embed_tokens.weight"]) == (name != "full")


@pytest.mark.parametrize("name", PROMPTING)
def test_prompting_methods_are_frozen_base_models(name):
    prepared = build_method(name, tiny_model(), ExperimentConfig())
    assert not prepared.trainable and not prepared.trainable_parameters() and not prepared.parameter_groups()
    assert float(prepared(*toy_batch()).aux_loss) == 0.0


def test_reference_methods_are_not_built_here():
    with pytest.raises(ValueError, match="non-LLM reference"):
        build_method("logistic", tiny_model(), ExperimentConfig())


def test_demographic_routing_needs_the_encoder_and_records_it():
    with pytest.raises(ValueError, match="pass the encoder"):
        build_method("cuma", tiny_model(), ExperimentConfig())
    config = ExperimentConfig(adapter_overrides={"cuma": {"demographic_input_dim": 8}})
    with pytest.raises(ValueError, match="does not match the encoder's output size 16"):
        build_method("cuma", tiny_model(), config, encoder=RandomProfileEncoder(16))
    adapter = build_method(
        "cuma", tiny_model(), ExperimentConfig(), encoder=RandomProfileEncoder(16)
    ).adapter_config
    assert adapter.encoder == RandomProfileEncoder(16).identity() and adapter.demographic_input_dim == 16


def test_no_demographic_really_ignores_the_profile():
    ids, mask, embeds = toy_batch()
    for name, reads in (("no-demographic", False), ("cuma", True), ("demographic-only", True)):
        prepared = toy_method(name, toy_config({name: {"router_layers": 1}}))
        assert prepared.uses_demographics == reads
        torch.nn.init.normal_(next(p for k, p in prepared.named_parameters() if "cuma_B" in k), std=1.0)
        a = prepared(ids, mask, embeds).logits
        b = prepared(ids, mask, embeds.flip(0)).logits
        assert torch.equal(a, b) != reads


def test_adapter_overrides_and_seeded_initialisation():
    config = toy_config({"cuma": {"rank": 4}}, seed=5)
    first, again = toy_method("cuma", config), toy_method("cuma", config)
    other = toy_method("cuma", toy_config({"cuma": {"rank": 4}}, seed=6))
    assert first.adapter_config.rank == 4
    a, b, c = weights(first), weights(again), weights(other)
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)
    with pytest.raises(ValueError, match="has no adapter to configure"):
        build_method("persona", tiny_model(), ExperimentConfig(adapter_overrides={"persona": {"rank": 4}}))


def test_command_line_adapter_overrides_are_typed_and_checked():
    config = toy_config().with_overrides(
        ["adapter_overrides.cuma.rank=4", "adapter_overrides.cuma.alpha=1e1"]
    )
    adapter = toy_method("cuma", config).adapter_config
    assert (adapter.rank, adapter.alpha) == (4, 10.0) and isinstance(adapter.alpha, float)
    typo = toy_config().with_overrides(["adapter_overrides.cuma.rnak=4"])
    with pytest.raises(ValueError, match=r"unknown field\(s\) adapter_overrides\.cuma\.rnak; known: .*rank"):
        check_methods(["lora"], typo)
    with pytest.raises(
        ValueError, match=r"adapter_overrides\.prefix\.num_virtual_tokens='many': expected int"
    ):
        toy_method("prefix", toy_config({"prefix": {"num_virtual_tokens": "many"}}))


@pytest.mark.parametrize("name", ["cuma", "prefix", "full"])
def test_saved_method_loads_on_a_fresh_base(tmp_path, name):
    config = toy_config(max_steps=2)
    trained, _ = run(name, config, tmp_path)
    trained.save(tmp_path / "saved")
    loaded = load_trained(tmp_path / "saved", tiny_model())
    assert loaded.name == name and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    trained.eval()
    with torch.no_grad():
        assert torch.equal(trained(*toy_batch()).logits, loaded(*toy_batch()).logits)
    assert load_trained(tmp_path / "saved", tiny_model(), is_trainable=True).trainable_parameters()


def test_saved_weights_refuse_another_base_and_altered_files(tmp_path):
    trained = toy_method("lora", toy_config())
    trained.save(tmp_path)
    with pytest.raises(
        ValueError, match=r"another model .*base_model\.model_type: saved .llama., this run .qwen3."
    ):
        load_trained(tmp_path, tiny_model("qwen3"))
    weights = tmp_path / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"adapter_model\.safetensors does not match the sha256"):
        load_trained(tmp_path, tiny_model())


def test_full_fine_tuning_of_a_bfloat16_base_trains_float32_master_weights(tmp_path):
    """At lr 5e-6 most bf16 weight updates would round away; the float32 master weights keep them."""
    AcceleratorState._reset_state(reset_partial_state=True)  # bf16 here, fp32 in the other tests
    config = toy_config(max_steps=3, lr=5e-6, precision="bf16")
    base = tiny_model().to(torch.bfloat16)
    before = {k: v.float().clone() for k, v in base.state_dict().items()}
    prepared = build_method("full", base, config)
    assert all(p.dtype == torch.float32 for p in prepared.parameters())
    train(prepared, toy_rows(), toy_collate, config.train, tmp_path)
    after = prepared.model.state_dict()
    # Embedding rows of tokens the toy data never uses get no gradient; every other weight must move.
    layers = [k for k in before if ".layers." in k]
    changed = sum(int((after[k] != before[k]).sum()) for k in layers)
    assert changed / sum(before[k].numel() for k in layers) > 0.95
