"""The shipped configs load, name known methods and valid adapters; the paper's one has its numbers."""

from pathlib import Path

import pytest

from cuma.adapter import CuMAConfig
from cuma.config import ExperimentConfig
from cuma.methods import PREFIX_DEFAULTS, check_methods, get_method
from cuma.train.trainer import validate

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_config_is_valid(path):
    config = ExperimentConfig.from_yaml(path)
    check_methods(config.methods, config)
    validate(config.train)
    for name, overrides in config.adapter_overrides.items():
        spec = get_method(name)
        if spec.kind == "adapter":
            CuMAConfig.from_preset(spec.preset, **overrides)
        else:
            assert spec.kind == "prefix" and set(overrides) <= set(PREFIX_DEFAULTS)


def test_paper_setting():
    config = ExperimentConfig.from_yaml(CONFIG_DIR / "wvb-qwen3-8b-paper.yaml")
    assert (config.model.name, config.model.encoder) == ("Qwen/Qwen3-8B", "Qwen/Qwen3-Embedding-0.6B")
    cuma = CuMAConfig.from_preset("cuma", **config.adapter_overrides["cuma"])
    assert (cuma.rank, cuma.alpha, cuma.num_experts, cuma.top_k) == (64, 128, 8, 2)
    train = config.train
    assert (train.lr, train.epochs, train.batch_size * train.grad_accum) == (5e-6, 3, 16)
