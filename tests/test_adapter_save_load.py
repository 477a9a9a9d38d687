"""save_pretrained / from_pretrained: exact round trip, and clear rejection of anything that does not fit."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cuma.adapter import CuMAConfig, CuMAModel, get_cuma_model
from cuma.adapter.model import CONFIG_NAME, WEIGHTS_NAME, _sha256
from cuma.tiny import tiny_model

DEMO = 16


def trained(family: str = "llama", **overrides: Any) -> CuMAModel:
    """An adapter whose every tensor differs from a fresh initialisation."""
    config = CuMAConfig.from_preset(
        "cuma", demographic_input_dim=DEMO, demographic_projection_layers=2, **overrides
    )
    model = get_cuma_model(tiny_model(family), config)
    torch.manual_seed(3)
    with torch.no_grad():
        for param in model.adapter_state_dict().values():
            param.normal_()
    return model


def outputs(model: CuMAModel) -> torch.Tensor:
    tokens = torch.randint(4, 500, (2, 6), generator=torch.Generator().manual_seed(0))
    embeds = torch.randn(2, DEMO, generator=torch.Generator().manual_seed(1))
    out = model(tokens, demographic_embeds=embeds)
    return torch.cat([out.logits.flatten(), out.aux_loss[None]])


def rewrite_weights(
    directory: Path, edit: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
) -> None:
    """Replace the weights with ``edit(tensors)`` and re-record the checksum, as a careless tool would."""
    tensors = edit(load_file(directory / WEIGHTS_NAME))
    save_file(tensors, directory / WEIGHTS_NAME)
    meta = json.loads((directory / CONFIG_NAME).read_text())
    meta["weights_sha256"] = _sha256(directory / WEIGHTS_NAME)
    (directory / CONFIG_NAME).write_text(json.dumps(meta))


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_round_trip_gives_identical_outputs(tmp_path: Path, family: str) -> None:
    model = trained(family)
    model.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert meta["base_model_name_or_path"] == f"tiny-{family}" and meta["base_model_type"] == family
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    loaded = CuMAModel.from_pretrained(tiny_model(family), tmp_path)
    assert loaded.config == model.config
    assert torch.equal(outputs(loaded), outputs(model))


def test_saved_tensors_are_the_adapter_only(tmp_path: Path) -> None:
    model = trained()
    model.save_pretrained(tmp_path)
    names = set(load_file(tmp_path / WEIGHTS_NAME))
    assert names == set(model.adapter_state_dict())
    assert {n.split(".")[0] for n in names} == {"experts", "routers", "projection"}


def test_config_for_another_base_model_is_rejected(tmp_path: Path) -> None:
    trained("llama").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"saved for base model 'tiny-llama'.*model_type='qwen3'"):
        CuMAModel.from_pretrained(tiny_model("qwen3"), tmp_path)
    with pytest.raises(ValueError, match=r"hidden_size=64.*hidden_size=32"):
        CuMAModel.from_pretrained(tiny_model("llama", hidden_size=32), tmp_path)


def test_tampered_weights_file_is_rejected(tmp_path: Path) -> None:
    trained().save_pretrained(tmp_path)
    data = bytearray((tmp_path / WEIGHTS_NAME).read_bytes())
    data[-5] ^= 0xFF
    (tmp_path / WEIGHTS_NAME).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the sha256"):
        CuMAModel.from_pretrained(tiny_model(), tmp_path)


def test_missing_unexpected_and_misshaped_tensors_are_listed_together(tmp_path: Path) -> None:
    trained().save_pretrained(tmp_path)
    a_name = "experts.model.layers.0.self_attn.q_proj.lora_A"
    b_name = "experts.model.layers.1.self_attn.v_proj.lora_B"

    def edit(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        tensors["experts.extra"] = tensors.pop(a_name)
        tensors[b_name] = tensors[b_name][:, :-1].contiguous()
        return tensors

    rewrite_weights(tmp_path, edit)
    with pytest.raises(ValueError) as err:
        CuMAModel.from_pretrained(tiny_model(), tmp_path)
    message = str(err.value)
    assert f"missing: ['{a_name}']" in message
    assert "unexpected: ['experts.extra']" in message
    assert f"{b_name}: (32, 63) (expected (32, 64))" in message


def test_unreadable_weights_and_config_are_clear_errors(tmp_path: Path) -> None:
    trained().save_pretrained(tmp_path)
    (tmp_path / WEIGHTS_NAME).write_bytes(b"not a safetensors file")
    meta = json.loads((tmp_path / CONFIG_NAME).read_text())
    meta["weights_sha256"] = _sha256(tmp_path / WEIGHTS_NAME)
    (tmp_path / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        CuMAModel.from_pretrained(tiny_model(), tmp_path)
    meta["config"]["top_k"] = 99
    (tmp_path / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"adapter_config.json is not a valid.*top_k"):
        CuMAModel.from_pretrained(tiny_model(), tmp_path)
    (tmp_path / CONFIG_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=r"no adapter_config.json"):
        CuMAModel.from_pretrained(tiny_model(), tmp_path)


def test_same_architecture_under_another_name_loads_with_a_warning(tmp_path: Path) -> None:
    model = trained()
    model.save_pretrained(tmp_path)
    other = tiny_model()
    other.config.name_or_path = "renamed"
    with pytest.warns(UserWarning, match="saved for base model 'tiny-llama'; loading it on 'renamed'"):
        loaded = CuMAModel.from_pretrained(other, tmp_path)
    assert torch.equal(outputs(loaded), outputs(model))


def test_loading_keeps_parameter_dtype_and_freezes_the_base(tmp_path: Path) -> None:
    trained().save_pretrained(tmp_path)
    loaded = CuMAModel.from_pretrained(tiny_model(), tmp_path)
    trainable = [p for p in loaded.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    assert not any(p.requires_grad for n, p in loaded.named_parameters() if "base_layer" in n)
    assert all(isinstance(m, nn.Module) for m in loaded.layers.values())
