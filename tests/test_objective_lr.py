"""Each preference objective may run at its own learning rate (``dpo.lr``, ``grpo.lr``)."""

from __future__ import annotations

import pytest
from torch import nn

from cuma.config import ExperimentConfig
from cuma.errors import ConfigError
from cuma.methods import entry_config
from cuma.preflight import check_settings
from cuma.train.optim import build_optimizer


def _config(*overrides: str) -> ExperimentConfig:
    return ExperimentConfig().with_overrides(["train.lr=1e-3", *overrides])


@pytest.mark.parametrize(
    ("overrides", "lr"),
    [
        ((), 1e-3),
        (("dpo.lr=5e-6",), 1e-3),  # an SFT run ignores the DPO rate
        (("train.objective=dpo",), 1e-3),  # no DPO rate: train.lr
        (("train.objective=dpo", "dpo.lr=5e-6"), 5e-6),
        (("train.objective=grpo", "dpo.lr=5e-6"), 1e-3),
        (("train.objective=grpo", "grpo.lr=2e-6"), 2e-6),
    ],
)
def test_objective_train_takes_the_objectives_own_rate(overrides: tuple[str, ...], lr: float) -> None:
    train = _config(*overrides).objective_train
    assert train.lr == lr
    assert train.objective == _config(*overrides).train.objective


def test_a_dpo_entry_of_a_comparison_runs_at_the_dpo_rate() -> None:
    config = _config("dpo.lr=5e-6", "train.router_lr=2e-3")
    _, sft = entry_config("cuma", config)
    _, dpo = entry_config("cuma@dpo", config)
    assert sft.objective_train.lr == 1e-3
    assert dpo.objective_train.lr == 5e-6
    assert dpo.objective_train.router_lr == 2e-3  # a rate set on its own is kept
    weights = [nn.Parameter(nn.Linear(2, 2).weight.detach())]
    optimizer = build_optimizer({"experts": weights}, dpo.objective_train)
    assert [group["lr"] for group in optimizer.param_groups] == [5e-6]


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ConfigError, match=r"dpo\.lr"):
        _config("dpo.lr=0")


def test_method_lr_sets_each_entrys_own_objective_rate() -> None:
    config = _config(
        "methods=[lora, cuma, cuma@dpo]", "method_lr={lora: 3.0e-4, cuma@dpo: 1.0e-5}", "dpo.lr=5e-6"
    )
    assert entry_config("lora", config)[1].objective_train.lr == 3e-4
    assert entry_config("cuma", config)[1].objective_train.lr == 1e-3
    assert entry_config("cuma@dpo", config)[1].objective_train.lr == 1e-5
    unlisted = _config("methods=[lora]", "method_lr={mixlora: 1.0e-4}")  # kept in the file, unused
    check_settings(unlisted, unlisted.methods)
    assert entry_config("lora", unlisted)[1].objective_train.lr == 1e-3
    unknown = _config("methods=[lora]", "method_lr={telepathy: 1.0e-4}")
    with pytest.raises(ConfigError, match=r"method_lr\.telepathy: unknown method 'telepathy'"):
        check_settings(unknown, unknown.methods)
    with pytest.raises(ConfigError, match=r"method_lr\.lora=0"):
        _config("methods=[lora]", "method_lr={lora: 0}")


def test_cuma_train_trains_a_method_at_its_own_rate(tmp_path) -> None:
    from cuma.quick import quick_config
    from cuma.train.checkpoint import read_run_shape
    from cuma.train.cli import train_method

    quick = quick_config(ExperimentConfig(method_lr={"lora": 9.0e-3}))
    assert quick.method_lr == {}  # the real model's rates are not the tiny one's
    config = quick.with_overrides([f"output_dir={tmp_path}", "train.max_steps=1", "method_lr={lora: 2.0e-3}"])
    result = train_method(config, "lora")
    assert read_run_shape(result.checkpoint)["train.lr"] == 2e-3


@pytest.mark.parametrize(
    ("method", "overrides", "lr"),
    [
        ("lora@dpo", ["method_lr={lora@dpo: 2.0e-3, lora: 5.0e-3}"], 2e-3),
        ("lora", ["train.objective=dpo", "method_lr={lora@dpo: 2.0e-3, lora: 5.0e-3}"], 5e-3),
    ],
)
def test_cuma_train_resolves_an_entry_as_cuma_compare_does(
    tmp_path, method: str, overrides: list[str], lr: float
) -> None:
    """``cuma train --method E`` trains what the ``methods`` entry E of a comparison trains: its objective,
    its ``method_lr`` rate and its run folder, so ``cuma compare --resume`` can pick the run up."""
    from cuma.quick import quick_config
    from cuma.train.checkpoint import read_run_shape
    from cuma.train.cli import train_method
    from cuma.train.layout import train_dir

    config = quick_config(ExperimentConfig()).with_overrides(
        [f"output_dir={tmp_path}", "train.max_steps=1", *overrides]
    )
    result = train_method(config, method)
    _, compared = entry_config(method, config)
    assert compared.objective_train.lr == lr
    assert read_run_shape(result.checkpoint)["train.lr"] == lr
    assert result.checkpoint.is_relative_to(train_dir(tmp_path / "train", "lora", 42, "dpo"))
