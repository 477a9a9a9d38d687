"""The shipped preference configs load, validate and name what the paper's table needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from cuma.config import ExperimentConfig
from cuma.data.chat_experiment import CHAT_DATASETS
from cuma.preflight import check_settings

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["ca-qwen3-8b-paper.yaml", "prism-qwen3-8b-paper.yaml"])
def test_the_paper_preference_configs_are_valid_chat_comparisons(name: str) -> None:
    config = ExperimentConfig.from_yaml(CONFIGS / name)
    check_settings(config, config.methods)
    assert config.data.dataset in CHAT_DATASETS
    assert config.judge.kind == "http" and config.judge.api_key_env == "OPENAI_API_KEY"
    assert {"cuma@dpo", "lora@dpo", "cuma@grpo"} <= set(config.methods)
    assert config.train.init_from == "{train_root}/{method}-seed{seed}"
    assert config.dpo.lr == 5e-6 and config.train.lr == 2e-5  # the authors' DPO and SFT rates
    assert config.adapter_overrides["cuma"]["target_modules"] == ["q_proj", "v_proj"]
