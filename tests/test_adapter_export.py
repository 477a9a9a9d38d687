"""A CuMA adapter exported as a plain PEFT LoRA gives the same logits, loads without cuma, and
token-routed presets are refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel

from cuma.adapter import CuMAConfig, get_cuma_model
from cuma.adapter.export import export_lora, export_profiles
from cuma.tiny import tiny_model

DEMO = 16


def trained(preset: str, **overrides: Any) -> torch.nn.Module:
    model = get_cuma_model(
        tiny_model(), CuMAConfig.from_preset(preset, demographic_input_dim=DEMO, **overrides)
    )
    torch.manual_seed(2)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.normal_(std=0.3)
    return model.eval()


def tokens() -> torch.Tensor:
    return torch.randint(4, 500, (2, 7), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("preset", "overrides"),
    [
        ("lora", {}),
        ("demographic-only", {}),
        ("demographic-only", {"shared_a": True}),
        ("demographic-only", {"routing": "soft", "top_k": None, "demographic_projection_layers": 1}),
    ],
)
def test_exported_lora_equals_the_adapter_for_that_profile(
    tmp_path: Path, preset: str, overrides: dict
) -> None:
    model = trained(preset, **overrides)
    profile = torch.randn(1, DEMO, generator=torch.Generator().manual_seed(5))
    export_lora(model, tmp_path, profile)
    ids = tokens()
    expected = model(input_ids=ids, demographic_embeds=profile.expand(2, -1)).logits
    plain = PeftModel.from_pretrained(tiny_model(), tmp_path).eval()
    assert plain.peft_config["default"].peft_type == "LORA"
    torch.testing.assert_close(plain(input_ids=ids).logits, expected, rtol=1e-5, atol=1e-5)
    if preset != "lora":
        other = torch.randn(1, DEMO, generator=torch.Generator().manual_seed(6))
        assert not torch.allclose(
            model(input_ids=ids, demographic_embeds=other.expand(2, -1)).logits, expected
        )


def test_export_loads_in_plain_peft_without_importing_cuma(tmp_path: Path) -> None:
    model = trained("lora")
    base_dir = tmp_path / "base"
    tiny_model().save_pretrained(base_dir)
    export_lora(model, tmp_path / "lora")
    script = (
        "import sys, torch\n"
        "from peft import PeftModel\n"
        "from transformers import AutoModelForCausalLM\n"
        f"base = AutoModelForCausalLM.from_pretrained({str(base_dir)!r})\n"
        f"model = PeftModel.from_pretrained(base, {str(tmp_path / 'lora')!r}).eval()\n"
        "ids = torch.randint(4, 500, (2, 7), generator=torch.Generator().manual_seed(0))\n"
        f"torch.save(model(input_ids=ids).logits, {str(tmp_path / 'logits.pt')!r})\n"
        "assert 'cuma' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    expected = model(input_ids=tokens()).logits
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, rtol=1e-5, atol=1e-5)


def test_many_profiles_get_one_folder_each_and_an_index(tmp_path: Path) -> None:
    model = trained("demographic-only")
    profiles = {"Nigeria 18-29": torch.randn(1, DEMO), "Sweden 65+": torch.randn(1, DEMO)}
    export_profiles(model, tmp_path, profiles)
    index = (tmp_path / "index.json").read_text()
    assert '"Nigeria 18-29": "Nigeria-18-29"' in index
    assert (tmp_path / "Sweden-65" / "adapter_config.json").is_file()


@pytest.mark.parametrize("preset", ["cuma", "cuma-soft", "mixlora", "hydralora", "no-demographic"])
def test_token_routed_presets_are_refused_with_the_reason(tmp_path: Path, preset: str) -> None:
    with pytest.raises(ValueError, match="routes every token on its hidden state"):
        export_lora(trained(preset), tmp_path, torch.randn(1, DEMO))
    assert not (tmp_path / "adapter_config.json").exists()


def test_profile_routed_export_needs_exactly_one_profile(tmp_path: Path) -> None:
    model = trained("demographic-only")
    for embeds in (None, torch.randn(2, DEMO)):
        with pytest.raises(ValueError, match=r"one profile embedding of shape \[1, 16\]"):
            export_lora(model, tmp_path, embeds)
