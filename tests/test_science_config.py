"""The science run's config: valid, large enough, and its matched LoRA has CuMA's parameter count; the main
job has the fair comparison's methods and option order too."""

from __future__ import annotations

import copy
from pathlib import Path

from cuma.config import ExperimentConfig
from cuma.methods import build_method
from cuma.preflight import check_settings

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "gss-science.yaml"


def test_the_science_config_is_sized_as_the_issue_asks() -> None:
    config = ExperimentConfig.from_yaml(CONFIG)
    check_settings(config, config.methods)
    assert config.data.n_test >= 1500 and len(config.seeds) == 3 and len(config.data_seeds) == 2
    assert {"base", "persona", "lora", "lora-matched", "no-demographic", "cuma", "demographic-only"} <= set(
        config.methods
    )
    assert config.data.option_order == "shuffled"


def test_the_matched_lora_has_cumas_trainable_parameter_count() -> None:
    from cuma.encoder import make_encoder
    from cuma.models import load_base_model

    config = ExperimentConfig.from_yaml(CONFIG)
    base, _ = load_base_model(config.model.name, dtype="float32")
    encoder = make_encoder(config.model)
    counts = {}
    for name in ("lora", "lora-matched", "cuma"):
        counts[name] = (
            build_method(name, copy.deepcopy(base), config, encoder=encoder).parameter_report().trainable
        )
    assert counts["lora"] < counts["cuma"] / 2  # the expert budget is far below CuMA's total
    assert abs(counts["lora-matched"] - counts["cuma"]) / counts["cuma"] < 0.01


def test_the_main_job_compares_fairly_by_default() -> None:
    from cuma.compare.cli import DEFAULT_CONFIG

    config = ExperimentConfig.from_yaml(DEFAULT_CONFIG)
    check_settings(config, config.methods)
    assert {"base", "persona", "lora", "lora-matched", "no-demographic", "cuma", "logistic"} <= set(
        config.methods
    )
    assert config.data.option_order == "shuffled" and config.data.heldout_cells
    assert config.adapter_overrides["lora-matched"]["rank"] == 193
