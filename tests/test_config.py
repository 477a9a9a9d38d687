"""Experiment config: every value checked at construction, dotted overrides, generated --help."""

import dataclasses
import typing

import pytest
import torch
from transformers import SchedulerType, get_scheduler

from cuma.cli import main
from cuma.config import (
    NO_WARMUP_SCHEDULES,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    ModelConfig,
    PrefixConfig,
    Schedule,
    TrainConfig,
)
from cuma.errors import ConfigError
from cuma.methods import check_methods, get_method, method_overrides

SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "eval": EvalConfig}


def test_override_creates_a_missing_adapter_overrides_entry():
    config = ExperimentConfig().with_overrides(
        ["adapter_overrides.cuma.rank=64", "adapter_overrides.cuma.alpha=128"]
    )
    assert config.adapter_overrides == {"cuma": {"rank": 64, "alpha": 128}}
    again = config.with_overrides(["adapter_overrides.cuma.rank=4", "adapter_overrides.lora.dropout=0.1"])
    assert again.adapter_overrides == {"cuma": {"rank": 4, "alpha": 128}, "lora": {"dropout": 0.1}}


def test_override_values_are_yaml_typed_by_the_field():
    config = ExperimentConfig().with_overrides(
        ["train.lr=1e-4", "train.max_steps=7", "data.persona_in_prompt=false", "train.epochs=2"]
    )
    assert (config.train.lr, config.train.max_steps, config.data.persona_in_prompt) == (1e-4, 7, False)
    assert config.train.epochs == 2.0 and isinstance(config.train.epochs, float)  # a float field takes ints


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=-0.001", r"train\.lr=-0\.001: must be a positive finite number"),
        ("train.lr=.nan", r"train\.lr=nan: must be a positive finite number"),
        ("train.lr=.inf", r"train\.lr=inf: must be a positive finite number"),
        ("train.lr=fast", r"train\.lr='fast': expected float"),
        ("train.lr=[1,2]", r"train\.lr=\[1, 2\]: expected float"),
        ("train.router_lr=0", r"train\.router_lr=0: must be a positive finite number"),
        ("train.max_steps=1.5", r"train\.max_steps=1\.5: expected int \| null"),
        ("train.max_steps=true", r"train\.max_steps=True: expected int \| null"),
        ("train.max_steps=0", r"train\.max_steps=0: must be at least 1"),
        ("train.batch_size=a", r"train\.batch_size='a': expected int"),
        ("train.warmup_ratio=1", r"train\.warmup_ratio=1: must be in \[0, 1\)"),
        ("train.max_grad_norm=-1", r"train\.max_grad_norm=-1: must be a finite number >= 0"),
        ("train.precision=fp16", r"train\.precision='fp16': expected 'bf16' \| 'fp32'"),
        ("train.schedule=zigzag", r"train\.schedule='zigzag': expected 'constant' \| .*'cosine'"),
        ("train.schedule=reduce_lr_on_plateau", r"train\.schedule='reduce_lr_on_plateau'"),
        ("train.warmup_ratio=0.1", r"train\.schedule='constant' ignores warm-up.*constant_with_warmup"),
        ("seeds=5", r"seeds=5: expected list\[int\]"),
        ("seeds=[a,b]", r"seeds=\['a', 'b'\]: expected list\[int\]"),
        ("seeds=[]", r"seeds=\[\]: must be non-empty"),
        ("seeds=[1,1]", r"seeds=\[1, 1\]: must not repeat a seed"),
        ("seeds=[-1]", r"seeds=\[-1\]: each seed must be in \[0, 2\*\*32\)"),
        ("methods=[]", r"methods=\[\]: must be non-empty"),
        ("data.n_train=-5", r"data\.n_train=-5: must be at least 1"),
        ("data.score_split=train", r"data\.score_split='train': expected 'test' \| 'valid'"),
        ("data.test_fraction=0.9", r"data\.valid_fraction=0\.1 \+ data\.test_fraction=0\.9: must be below 1"),
        ("data.heldout_cells={race: black}", r"data\.heldout_cells=\{'race': 'black'\}: expected dict"),
        ("data.heldout_cells={race: []}", r"data\.heldout_cells\.race=\[\]: must be a non-empty list"),
        ("eval.padding_side=middle", r"eval\.padding_side='middle'"),
        ("eval.precision=fp8", r"eval\.precision='fp8'"),
        ("eval.routing_tokens=everything", r"eval\.routing_tokens='everything'"),
        ("eval.few_shot=0", r"eval\.few_shot=0: must be at least 1"),
        ("eval.group_fields=[]", r"eval\.group_fields=\[\]: must be non-empty"),
        ("model.dtype=int8", r"model\.dtype='int8'"),
        ("output_dir=", r"output_dir=None: expected str"),
        ("adapter_overrides.cuma=4", r"adapter_overrides=\{'cuma': 4\}: expected dict\[str, dict"),
    ],
)
def test_bad_override_names_the_field_value_and_source(override, message):
    with pytest.raises(ConfigError, match=f"^command-line overrides: {message}") as caught:
        ExperimentConfig().with_overrides([override])
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr.scale=2", "'lr' is not a config section"),
        ("trian.lr=1e-4", "unknown config field.*trian"),
        ("train.lr_max=1e-4", r"unknown config field.*train\.lr_max"),
        ("data.n_valid=10", r"unknown config field.*data\.n_valid"),  # never read: removed
        ("train.lr", "not of the form section.field=value"),
        ("train={lr: 1}", r"would replace every train field; set them as train\.field=value"),
        ("methods=[a,", r"override 'methods=\[a,': not a YAML value"),
    ],
)
def test_malformed_override_is_named(override, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentConfig().with_overrides([override])


def test_a_bad_value_in_the_file_names_the_file(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("train:\n  lr: .nan\n")
    with pytest.raises(ConfigError, match=rf"^{path}: train\.lr=nan: must be a positive finite number$"):
        ExperimentConfig.from_yaml(path)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match=rf"^{path}: expected a mapping of config fields, got list"):
        ExperimentConfig.from_yaml(path)
    path.write_text("train: fast\n")
    with pytest.raises(ConfigError, match=rf"^{path}: train='fast': expected a mapping of train\.\* fields"):
        ExperimentConfig.from_yaml(path)
    with pytest.raises(FileNotFoundError, match="config file not found"):
        ExperimentConfig.from_yaml(tmp_path / "missing.yaml")


def test_file_values_then_overrides(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("train: {lr: 1.0e-3, max_steps: 3}\nseeds: [1, 2]\n")
    config = ExperimentConfig.from_yaml(path, ["train.max_steps=5"])
    assert (config.train.lr, config.train.max_steps, config.seeds) == (1e-3, 5, [1, 2])


def test_python_construction_is_checked_too():
    with pytest.raises(ConfigError, match=r"^train\.lr=-1: must be a positive finite number$"):
        TrainConfig(lr=-1)
    with pytest.raises(ConfigError, match=r"^train\.max_steps=1\.5"):
        TrainConfig(max_steps=1.5)
    with pytest.raises(ConfigError, match=r"^seeds=5: expected list\[int\]"):
        ExperimentConfig(seeds=5)
    with pytest.raises(ConfigError, match=r"^train=\{'lr': 1\}: expected TrainConfig"):
        ExperimentConfig(train={"lr": 1})
    with pytest.raises(
        ConfigError, match=r"^adapter_overrides\.prefix\.num_virtual_tokens=0: must be at least 1"
    ):
        PrefixConfig(num_virtual_tokens=0)


def test_a_checked_config_cannot_change_unchecked():
    config = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = -1.0  # type: ignore[misc]
    with pytest.raises(ConfigError, match=r"train\.lr=-1\.0"):
        dataclasses.replace(config, lr=-1.0)


def test_to_dict_round_trip():
    config = ExperimentConfig().with_overrides(
        ["data.heldout_cells={race: [black], year: [2018]}", "adapter_overrides.cuma.rank=4", "seeds=[1,2]"]
    )
    assert ExperimentConfig.from_dict(config.to_dict()) == config


def test_adapter_overrides_are_typed_by_the_method_config():
    with pytest.raises(ConfigError, match=r"adapter_overrides\.cuma\.rank=1\.5: expected int"):
        check_methods(["cuma"], ExperimentConfig().with_overrides(["adapter_overrides.cuma.rank=1.5"]))
    with pytest.raises(
        ConfigError, match=r"adapter_overrides\.prefix\.prefix_projection='yes': expected bool"
    ):
        check_methods(
            ["prefix"], ExperimentConfig(adapter_overrides={"prefix": {"prefix_projection": "yes"}})
        )
    typed = method_overrides(get_method("cuma"), {"alpha": 16, "target_modules": ["q_proj", "o_proj"]})
    assert typed == {"alpha": 16.0, "target_modules": ("q_proj", "o_proj")} and isinstance(
        typed["alpha"], float
    )


@pytest.mark.parametrize("name", typing.get_args(Schedule))
def test_every_accepted_schedule_is_one_transformers_builds_and_steps(name):
    probe = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = get_scheduler(SchedulerType(name), probe, num_warmup_steps=2, num_training_steps=6)
    first = probe.param_groups[0]["lr"]
    for _ in range(6):
        probe.step()
        schedule.step()
    assert (first == 1.0) == (name in NO_WARMUP_SCHEDULES)  # the others start their warm-up below lr
    TrainConfig(schedule=name, warmup_ratio=0.0 if name in NO_WARMUP_SCHEDULES else 0.1)


def test_help_lists_every_field_with_type_default_and_doc(capsys):
    for command in ("compare", "train"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        for section, cls in SECTIONS.items():
            for f in dataclasses.fields(cls):
                assert f"  {section}.{f.name} (" in text, f"{command} --help misses {section}.{f.name}"
                assert f.metadata["help"].split()[0] in text
        for name in ("methods", "seeds", "output_dir", "adapter_overrides"):
            assert f"  {name} (" in text
        assert "  train.lr (float, default 0.0002; a positive finite number)" in text
        assert "  adapter_overrides.prefix.num_virtual_tokens (int, default 32; at least 1)" in text
