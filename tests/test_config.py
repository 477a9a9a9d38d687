"""Experiment config: dotted command-line overrides, including entries of free-form mappings."""

import pytest

from cuma.config import ExperimentConfig


def test_override_creates_a_missing_adapter_overrides_entry():
    config = ExperimentConfig().with_overrides(
        ["adapter_overrides.cuma.rank=64", "adapter_overrides.cuma.alpha=128"]
    )
    assert config.adapter_overrides == {"cuma": {"rank": 64, "alpha": 128}}
    again = config.with_overrides(["adapter_overrides.cuma.rank=4", "adapter_overrides.lora.dropout=0.1"])
    assert again.adapter_overrides == {"cuma": {"rank": 4, "alpha": 128}, "lora": {"dropout": 0.1}}


def test_override_numbers_follow_the_field_type():
    config = ExperimentConfig().with_overrides(
        ["train.lr=1e-4", "train.max_steps=7", "data.persona_in_prompt=false"]
    )
    assert (config.train.lr, config.train.max_steps, config.data.persona_in_prompt) == (1e-4, 7, False)
    with pytest.raises(ValueError, match=r"train\.lr must be a float, got 'fast'"):
        ExperimentConfig().with_overrides(["train.lr=fast"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr.scale=2", "'lr' is not a config section"),
        ("trian.lr=1e-4", "unknown config field.*trian"),
        ("train.lr_max=1e-4", r"unknown config field.*train\.lr_max"),
        ("data.n_valid=10", r"unknown config field.*data\.n_valid"),  # never read: removed
        ("train.lr", "not of the form section.field=value"),
    ],
)
def test_bad_override_is_named(override, message):
    with pytest.raises(ValueError, match=message):
        ExperimentConfig().with_overrides([override])
