"""``train.gradient_checkpointing`` trades compute for activation memory and changes nothing else: every
trained method kind it supports ends with the weights it ends with without it (dropout on, so the
recompute must replay the same masks), a resume may switch it on, and prefix tuning (whose prefix is a
key/value cache) is refused before any training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from test_train_resume import Killed, kill_at
from train_toys import run, toy_config, weights


@pytest.mark.parametrize("method", ["lora", "cuma", "full"])
def test_checkpointed_training_ends_with_the_same_weights(tmp_path: Path, method: str) -> None:
    overrides = {method: {"dropout": 0.1}} if method in ("lora", "cuma") else {}
    plain, _ = run(method, toy_config(overrides, max_steps=2), tmp_path / "plain")
    checkpointed, _ = run(
        method, toy_config(overrides, max_steps=2, gradient_checkpointing=True), tmp_path / "checkpointed"
    )
    model = checkpointed.model
    assert getattr(model, "get_base_model", lambda: model)().is_gradient_checkpointing
    before, after = weights(plain), weights(checkpointed)
    assert before.keys() == after.keys() and before
    for name in before:
        torch.testing.assert_close(after[name], before[name], rtol=1e-6, atol=1e-7, msg=name)


def test_a_resume_may_switch_checkpointing_on(tmp_path: Path) -> None:
    overrides = {"cuma": {"dropout": 0.1}}
    config = toy_config(overrides, max_steps=3, save_every=1, keep_checkpoints=None)
    uninterrupted, _ = run("cuma", config, tmp_path / "plain")
    with pytest.raises(Killed):
        run("cuma", config, tmp_path / "switched", on_step=kill_at(2))
    switched = toy_config(
        overrides, max_steps=3, save_every=1, keep_checkpoints=None, gradient_checkpointing=True
    )
    resumed, result = run("cuma", switched, tmp_path / "switched", resume=True)
    assert result.global_step == 3 and resumed.model.get_base_model().is_gradient_checkpointing
    expected, got = weights(uninterrupted), weights(resumed)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=1e-7, msg=name)


def test_prefix_tuning_under_checkpointing_is_refused_before_any_training(tmp_path: Path) -> None:
    from cuma.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["compare", "--quick", "methods=[lora, prefix]", "train.gradient_checkpointing=true",
              f"output_dir={tmp_path}"])  # fmt: skip
    assert stopped.value.code == 2 and not (tmp_path / "train").exists()
    with pytest.raises(ValueError, match="prefix tuning"):
        run("prefix", toy_config(max_steps=1, gradient_checkpointing=True), tmp_path / "direct")
