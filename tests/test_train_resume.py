"""A run killed mid-way and resumed ends with exactly the weights of an uninterrupted run."""

from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType

from cuma.train import list_checkpoints
from cuma.train.checkpoint import CheckpointError, load_checkpoint, read_run_shape
from train_toys import run, toy_config, weights


class Killed(Exception):
    """Stands in for the process dying after an optimizer step."""


def kill_at(step):
    def hook(global_step, logs):
        if global_step == step:
            raise Killed

    return hook


# (save_every, kill after step): a checkpoint mid-epoch, and one at an epoch boundary (3 steps per epoch).
@pytest.mark.parametrize(("save_every", "kill"), [(2, 5), (3, 4)])
def test_resumed_run_is_bit_identical(tmp_path, save_every, kill):
    config = toy_config({"cuma": {"dropout": 0.2, "demographic_projection_layers": 1}}, save_every=save_every)
    reference, full = run("cuma", config, tmp_path / "full")

    with pytest.raises(Killed):
        run("cuma", config, tmp_path / "resumed", on_step=kill_at(kill))
    newest = list_checkpoints(tmp_path / "resumed" / "checkpoints")[-1]
    assert newest.name.endswith(f"{kill // save_every * save_every:08d}")
    resumed, rest = run("cuma", config, tmp_path / "resumed", resume=True)

    assert rest.global_step == full.global_step
    first_replayed = kill // save_every * save_every
    assert [h["loss"] for h in rest.history] == [h["loss"] for h in full.history[first_replayed:]]
    expected, got = weights(reference), weights(resumed)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    config = toy_config(max_steps=2)
    done, first = run("lora", config, tmp_path)
    again, second = run("lora", config, tmp_path, resume=True)
    assert second.history == [] and second.checkpoint == first.checkpoint and second.global_step == 2
    assert all(torch.equal(weights(done)[k], v) for k, v in weights(again).items())


def test_existing_checkpoints_need_resume(tmp_path):
    config = toy_config(max_steps=1)
    run("lora", config, tmp_path)
    with pytest.raises(FileExistsError, match="resume"):
        run("lora", config, tmp_path)


def test_checkpoint_of_another_method_is_refused_before_training(tmp_path):
    run("lora", toy_config(max_steps=1), tmp_path)
    steps = []
    with pytest.raises(ValueError, match=r"method\.name: saved 'lora', this run 'cuma'"):
        run("cuma", toy_config(max_steps=1), tmp_path, resume=True, on_step=lambda s, _: steps.append(s))
    assert steps == []


def test_checkpoint_of_another_base_model_is_refused(tmp_path):
    run("lora", toy_config(max_steps=1), tmp_path, family="llama")
    with pytest.raises(ValueError, match="tiny-llama"):
        run("lora", toy_config(max_steps=1), tmp_path, family="qwen3", resume=True)


def test_checkpoint_of_another_run_shape_is_refused(tmp_path):
    run("lora", toy_config(max_steps=1), tmp_path)
    with pytest.raises(ValueError, match=r"train\.batch_size: checkpoint 2, this run 5"):
        run("lora", toy_config(max_steps=1, batch_size=5), tmp_path, resume=True)


def test_a_one_process_checkpoint_is_refused_under_a_sharded_strategy(tmp_path):
    """Its optimizer state is keyed by index; FSDP and DeepSpeed ZeRO resume a state keyed by parameter
    name (tests/test_multiprocess_deepspeed.py, tests/test_multiprocess_fsdp2.py resume those)."""
    prepared, result = run("lora", toy_config(max_steps=1), tmp_path)
    shape = read_run_shape(result.checkpoint)
    for strategy in (DistributedType.DEEPSPEED, DistributedType.FSDP):
        sharded = SimpleNamespace(distributed_type=strategy)
        with pytest.raises(CheckpointError, match="by parameter index, written without FSDP or DeepSpeed"):
            load_checkpoint(sharded, result.checkpoint, prepared, None, None, shape)
