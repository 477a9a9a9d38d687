"""The shipped configs load, name known methods and valid adapters; the paper's one has its numbers."""

from pathlib import Path

import pytest

from cuma.adapter import CuMAConfig
from cuma.compare.cli import DEFAULT_CONFIG
from cuma.config import ExperimentConfig, PrefixConfig
from cuma.methods import get_method, method_overrides
from cuma.preflight import check_settings

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = [*sorted(CONFIG_DIR.glob("*.yaml")), DEFAULT_CONFIG]


def test_every_shipped_config_is_found():
    assert len(CONFIGS) >= 5 and DEFAULT_CONFIG.is_file()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_is_valid(path):
    config = ExperimentConfig.from_yaml(path)
    check_settings(config, config.methods)  # known methods, every adapter override a valid CuMAConfig
    for name, overrides in config.adapter_overrides.items():
        spec = get_method(name)
        if spec.kind == "prefix":
            PrefixConfig(**method_overrides(spec, overrides))
    assert ExperimentConfig.from_dict(config.to_dict()) == config


def test_paper_setting():
    config = ExperimentConfig.from_yaml(CONFIG_DIR / "wvb-qwen3-8b-paper.yaml")
    assert (config.model.name, config.model.encoder) == ("Qwen/Qwen3-8B", "Qwen/Qwen3-Embedding-0.6B")
    cuma = CuMAConfig.from_preset("cuma", **config.adapter_overrides["cuma"])
    assert (cuma.rank, cuma.alpha, cuma.num_experts, cuma.top_k) == (64, 128, 8, 2)
    train = config.train
    assert (train.lr, train.epochs, train.batch_size * train.grad_accum) == (5e-6, 3, 16)
