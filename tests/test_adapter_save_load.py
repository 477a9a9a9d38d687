"""Saving and loading: PEFT's own loaders read a CuMA folder exactly; `load_cuma_model` also rejects what
does not fit (another base model, altered weights, missing or mis-shaped tensors, a broken config)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import AutoPeftModelForCausalLM, PeftConfig, PeftModel
from safetensors.torch import load_file, save_file

from cuma.adapter import CuMAConfig, CuMAPeftModel, get_cuma_model, load_cuma_model
from cuma.adapter.peft_model import CONFIG_NAME
from cuma.sidecar import SIDECAR_NAME, sha256_file
from cuma.tiny import tiny_model

DEMO = 16
WEIGHTS_NAME = "adapter_model.safetensors"


def trained(family: str = "llama", **overrides: Any) -> CuMAPeftModel:
    """An adapter whose every tensor differs from a fresh initialisation."""
    config = CuMAConfig.from_preset(
        "cuma", demographic_input_dim=DEMO, demographic_projection_layers=2, **overrides
    )
    model = get_cuma_model(tiny_model(family), config)
    torch.manual_seed(3)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.normal_()
    return model.eval()


def outputs(model: torch.nn.Module, seed: int = 1) -> torch.Tensor:
    tokens = torch.randint(4, 500, (2, 6), generator=torch.Generator().manual_seed(0))
    embeds = torch.randn(2, DEMO, generator=torch.Generator().manual_seed(seed))
    out = model(input_ids=tokens, demographic_embeds=embeds)
    return torch.cat([out.logits.flatten(), out.aux_loss[None]])


def rewrite_weights(
    directory: Path, edit: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
) -> None:
    """Replace the weights with ``edit(tensors)`` and re-record the checksum, as a careless tool would."""
    tensors = edit(load_file(directory / WEIGHTS_NAME))
    save_file(tensors, directory / WEIGHTS_NAME)
    meta = json.loads((directory / SIDECAR_NAME).read_text())
    meta["files"][WEIGHTS_NAME] = sha256_file(directory / WEIGHTS_NAME)
    (directory / SIDECAR_NAME).write_text(json.dumps(meta))


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_peft_from_pretrained_gives_identical_outputs_for_two_profiles(tmp_path: Path, family: str) -> None:
    model = trained(family)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert config["peft_type"] == "CUMA" and config["base_model_name_or_path"] == f"tiny-{family}"
    assert type(PeftConfig.from_pretrained(tmp_path)) is CuMAConfig
    loaded = PeftModel.from_pretrained(tiny_model(family), tmp_path)
    assert loaded.peft_config["default"].settings() == model.peft_config["default"].settings()
    for seed in (1, 2):  # two different profiles
        assert torch.equal(outputs(loaded, seed), outputs(model, seed))
    assert not torch.equal(outputs(model, 1), outputs(model, 2))
    ours = load_cuma_model(tiny_model(family), tmp_path)
    assert torch.equal(outputs(ours), outputs(model))


def test_auto_peft_model_loads_the_folder_and_its_base(tmp_path: Path) -> None:
    base_dir = tmp_path / "base"
    tiny_model().save_pretrained(base_dir)
    base = tiny_model()
    base.name_or_path = str(base_dir)
    model = get_cuma_model(base, CuMAConfig.from_preset("cuma", demographic_input_dim=DEMO))
    with torch.no_grad():
        for layer in model.layers.values():
            layer.cuma_B["default"].normal_()
    model.eval().save_pretrained(tmp_path / "adapter")
    loaded = AutoPeftModelForCausalLM.from_pretrained(tmp_path / "adapter")
    assert torch.equal(outputs(loaded), outputs(model))


def test_folder_is_peft_layout_with_card_and_sidecar(tmp_path: Path) -> None:
    trained().save_pretrained(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([CONFIG_NAME, WEIGHTS_NAME, SIDECAR_NAME, "README.md"])
    keys = set(load_file(tmp_path / WEIGHTS_NAME))
    assert all(".default" not in key for key in keys), "the adapter name is not part of the saved keys"
    assert any(".cuma_A" in k for k in keys) and any("cuma_routers." in k for k in keys)
    assert any("cuma_projection." in k for k in keys)
    card = (tmp_path / "README.md").read_text()
    assert "library_name: peft" in card and "cuma" in card.split("---")[1]
    assert "## CuMA adapter" in card and "Preset: `cuma`" in card


def test_saving_twice_keeps_one_cuma_section(tmp_path: Path) -> None:
    model = trained()
    model.save_pretrained(tmp_path)
    model.training_record = {"steps": 3}
    model.save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert card.count("## CuMA adapter") == 1 and "- steps: 3" in card


def test_adapter_under_another_name_loads(tmp_path: Path) -> None:
    model = trained()
    model.save_pretrained(tmp_path)
    other = load_cuma_model(tiny_model(), tmp_path, adapter_name="survey")
    assert other.active_adapter == "survey"
    assert torch.equal(outputs(other), outputs(model))


def test_config_for_another_base_model_is_rejected(tmp_path: Path) -> None:
    trained("llama").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"saved for base model 'tiny-llama'.*model_type='qwen3'"):
        load_cuma_model(tiny_model("qwen3"), tmp_path)
    with pytest.raises(ValueError, match=r"hidden_size=64.*hidden_size=32"):
        load_cuma_model(tiny_model("llama", hidden_size=32), tmp_path)


def test_tampered_weights_file_is_rejected(tmp_path: Path) -> None:
    trained().save_pretrained(tmp_path)
    data = bytearray((tmp_path / WEIGHTS_NAME).read_bytes())
    data[-5] ^= 0xFF
    (tmp_path / WEIGHTS_NAME).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the sha256"):
        load_cuma_model(tiny_model(), tmp_path)


def test_missing_unexpected_and_misshaped_tensors_are_listed_together(tmp_path: Path) -> None:
    trained().save_pretrained(tmp_path)
    a_name = "base_model.model.model.layers.0.self_attn.q_proj.cuma_A"
    b_name = "base_model.model.model.layers.1.self_attn.v_proj.cuma_B"

    def edit(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        tensors["base_model.extra"] = tensors.pop(a_name)
        tensors[b_name] = tensors[b_name][:, :-1].contiguous()
        return tensors

    rewrite_weights(tmp_path, edit)
    with pytest.raises(ValueError) as err:
        load_cuma_model(tiny_model(), tmp_path)
    message = str(err.value)
    assert f"missing: ['{a_name}']" in message
    assert "unexpected: ['base_model.extra']" in message
    assert f"{b_name}: (32, 63) (expected (32, 64))" in message


def test_unreadable_weights_and_config_are_clear_errors(tmp_path: Path) -> None:
    trained().save_pretrained(tmp_path)
    (tmp_path / WEIGHTS_NAME).write_bytes(b"not a safetensors file")
    rewrite = json.loads((tmp_path / SIDECAR_NAME).read_text())
    rewrite["files"][WEIGHTS_NAME] = sha256_file(tmp_path / WEIGHTS_NAME)
    (tmp_path / SIDECAR_NAME).write_text(json.dumps(rewrite))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_cuma_model(tiny_model(), tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**config, "top_k": 99}))
    with pytest.raises(ValueError, match=r"adapter_config.json is not a valid CuMA adapter config.*top_k"):
        load_cuma_model(tiny_model(), tmp_path)
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**config, "peft_type": "LORA"}))
    with pytest.raises(ValueError, match=r"describes a 'LORA' PEFT adapter, not a CuMA adapter"):
        load_cuma_model(tiny_model(), tmp_path)
    (tmp_path / CONFIG_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=r"no adapter_config.json"):
        load_cuma_model(tiny_model(), tmp_path)


def test_same_architecture_under_another_name_loads_with_a_warning(tmp_path: Path) -> None:
    model = trained()
    model.save_pretrained(tmp_path)
    other = tiny_model()
    other.config.name_or_path = "renamed"
    with pytest.warns(UserWarning, match="saved for base model 'tiny-llama'; loading it on 'renamed'"):
        loaded = load_cuma_model(other, tmp_path)
    assert torch.equal(outputs(loaded), outputs(model))


def test_loading_for_inference_freezes_everything_and_for_training_only_the_base(tmp_path: Path) -> None:
    trained().save_pretrained(tmp_path)
    frozen = load_cuma_model(tiny_model(), tmp_path)
    assert not any(p.requires_grad for p in frozen.parameters())
    trainable = load_cuma_model(tiny_model(), tmp_path, is_trainable=True)
    names = [n for n, p in trainable.named_parameters() if p.requires_grad]
    assert names and all("cuma_" in n for n in names)
    groups = trainable.parameter_groups()
    assert {id(p) for p in trainable.parameters() if p.requires_grad} == {
        id(p) for params in groups.values() for p in params
    }
    assert all(p.dtype == torch.float32 for n, p in trainable.named_parameters() if "cuma_" in n)


def test_lora_preset_merges_into_the_base(tmp_path: Path) -> None:
    base = tiny_model()
    reference = copy.deepcopy(base)
    model = get_cuma_model(base, CuMAConfig.from_preset("lora"))
    with torch.no_grad():
        for layer in model.layers.values():
            layer.cuma_B["default"].normal_()
    tokens = torch.randint(4, 500, (2, 6), generator=torch.Generator().manual_seed(0))
    adapted = model(input_ids=tokens).logits
    merged = model.merge_and_unload()
    torch.testing.assert_close(merged(tokens).logits, adapted, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(reference(tokens).logits, adapted)
    routed = get_cuma_model(tiny_model(), CuMAConfig.from_preset("cuma", demographic_input_dim=DEMO))
    with pytest.raises(ValueError, match="routes each token"):
        routed.merge_and_unload()
