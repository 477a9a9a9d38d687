"""The shipped paper config reproduces the paper's trainable-parameter shares of Qwen3-8B, computed on
the meta device from the model's config (nothing is downloaded)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen3Config

from cuma.config import ExperimentConfig
from cuma.data.profiles import KEY_VALUE
from cuma.methods import build_method

PAPER = Path(__file__).resolve().parents[1] / "configs" / "wvb-qwen3-8b-paper.yaml"


class Qwen3Embedding:
    """Stands in for Qwen3-Embedding-0.6B's identity: only its output size (1024) matters here."""

    dim = 1024
    template = KEY_VALUE

    def adapter_settings(self) -> dict[str, object]:
        identity = {"name_or_path": "Qwen/Qwen3-Embedding-0.6B", "pooling": "last", "max_length": 128}
        return {
            "demographic_input_dim": self.dim,
            "encoder": {**identity, "normalize": False, "dim": self.dim},
            "profile_template": self.template.to_dict(),
        }


@pytest.fixture(scope="module")
def qwen3_8b() -> torch.nn.Module:
    config = Qwen3Config(
        vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=False,
    )  # fmt: skip
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize(
    ("method", "overrides", "percent"),
    [("cuma", [], "4.15"), ("cuma", ["adapter_overrides.cuma.rank=8"], "1.53"), ("lora", [], "0.37")],
)
def test_paper_config_gives_the_papers_parameter_shares(
    qwen3_8b: torch.nn.Module, method: str, overrides: list[str], percent: str
) -> None:
    config = ExperimentConfig.from_yaml(PAPER, overrides)
    prepared = build_method(method, copy.deepcopy(qwen3_8b), config, encoder=Qwen3Embedding())
    report = prepared.parameter_report()
    assert report.base_parameters == 8_190_735_360
    assert f"{report.percent():.2f}" == percent
