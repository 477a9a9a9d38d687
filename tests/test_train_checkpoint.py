"""Checkpoints are atomic: a save that fails half-way leaves the previous checkpoint as it was."""

import errno
import json
import re

import pytest
import torch
from accelerate.utils import DistributedType
from safetensors.torch import load_file

from cuma.train import checkpoint, list_checkpoints
from cuma.train.optim import build_optimizer
from train_toys import run, toy_config


def snapshot(directory):
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    return {str(p.relative_to(directory)): p.read_bytes() for p in files}


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    config = toy_config(save_every=2)
    root = tmp_path / "checkpoints"
    before = {}
    real_save_file = checkpoint.save_file

    def disk_full_at_step_4(tensors, filename, *args, **kwargs):
        if "step-00000004" in str(filename):
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return real_save_file(tensors, filename, *args, **kwargs)

    def remember_step_2(step, logs):
        if step == 2:
            before.update(snapshot(root / "step-00000002"))

    monkeypatch.setattr(checkpoint, "save_file", disk_full_at_step_4)
    with pytest.raises(OSError, match="No space left"):
        run("cuma", config, tmp_path, on_step=remember_step_2)

    assert [p.name for p in root.iterdir()] == ["step-00000002"]  # no step 4, no temp debris
    assert snapshot(root / "step-00000002") == before
    monkeypatch.setattr(checkpoint, "save_file", real_save_file)
    _, result = run("cuma", config, tmp_path, resume=True)
    assert result.global_step == 6
    assert len(result.history) == 4  # resumed after step 2


def test_interrupted_temp_dirs_are_not_checkpoints(tmp_path):
    run("lora", toy_config(max_steps=2, save_every=1, keep_checkpoints=None), tmp_path)
    root = tmp_path / "checkpoints"
    (root / ".tmp-step-00000003").mkdir()
    (root / "step-00000009").mkdir()  # no trainer_state.json: incomplete
    assert [p.name for p in list_checkpoints(root)] == ["step-00000001", "step-00000002"]


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    run("lora", toy_config(save_every=1, keep_checkpoints=2), tmp_path)
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step-00000005", "step-00000006"]


def test_checkpoint_holds_data_position_and_scheduler(tmp_path):
    run("lora", toy_config(save_every=4, keep_checkpoints=None), tmp_path)
    state = json.loads((tmp_path / "checkpoints" / "step-00000004" / checkpoint.STATE_FILE).read_text())
    # 5 micro-batches per epoch in groups of 2, 2, 1: step 4 is the first step of epoch 1.
    assert state["position"] == {"global_step": 4, "epoch": 1, "batch_in_epoch": 2}
    assert state["scheduler"]["last_epoch"] == 4


class OtherProcessFails:
    """A main process whose peer failed while saving: the agreement after each phase reports one failure."""

    is_main_process, process_index, device = True, 0, torch.device("cpu")
    distributed_type = DistributedType.MULTI_CPU

    def unwrap_model(self, model):
        return model

    def wait_for_everyone(self):
        pass

    def reduce(self, tensor, reduction):
        return tensor + 1


def test_a_save_that_fails_on_another_process_raises_here_instead_of_waiting(tmp_path):
    config = toy_config(max_steps=1)
    prepared, _ = run("lora", config, tmp_path / "run")
    optimizer = build_optimizer(prepared.parameter_groups(), config.train)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    position = checkpoint.Position(global_step=1, epoch=0, batch_in_epoch=2)
    root = tmp_path / "checkpoints"
    with pytest.raises(RuntimeError, match="failed on another process"):
        checkpoint.save_checkpoint(
            OtherProcessFails(), root, prepared, prepared, optimizer, scheduler, position, {}, 2
        )
    assert list(root.iterdir()) == []  # the half-written temp dir is removed


class Gathering(OtherProcessFails):
    """A process of a sharded run: its parameters are shards, and gathering returns other tensors."""

    def __init__(self, gathered, main):
        self.gathered, self.is_main_process, self.process_index = gathered, main, 0 if main else 1

    def reduce(self, tensor, reduction):
        return tensor


@pytest.mark.parametrize("main", [True, False])
def test_a_checkpoint_holds_the_gathered_weights_written_by_the_main_process_only(
    tmp_path, main, monkeypatch
):
    config = toy_config(max_steps=1)
    prepared, _ = run("lora", config, tmp_path / "run")
    gathered = {key: value + 1 for key, value in prepared.state_dict().items()}
    optimizer = build_optimizer(prepared.parameter_groups(), config.train)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    position = checkpoint.Position(global_step=1, epoch=0, batch_in_epoch=2)
    root = tmp_path / "checkpoints"
    local = {key: value.clone() for key, value in prepared.state_dict().items()}
    monkeypatch.setattr(checkpoint, "gathered_weights", lambda accelerator, model: accelerator.gathered)
    saved = checkpoint.save_checkpoint(
        Gathering(gathered, main), root, prepared, prepared, optimizer, scheduler, position, {}, 2
    )
    if not main:
        assert not saved.exists() and not (root / f".tmp-{saved.name}" / checkpoint.MODEL_DIR).exists()
        return
    assert all(torch.equal(value, local[key]) for key, value in prepared.state_dict().items())  # untouched
    written = load_file(saved / checkpoint.MODEL_DIR / "adapter_model.safetensors")
    # PEFT's file names the adapter weights without the adapter name, relative to the wrapped model.
    names = {n.replace(".default", ""): f"model.{n}" for n in prepared.trainable_parameters()}
    assert written.keys() == names.keys()
    for key, tensor in written.items():
        assert torch.equal(tensor, gathered[names[key]]) and not torch.equal(tensor, local[names[key]]), key


def test_a_save_gathers_no_frozen_weight_and_keeps_every_adapter_tensor(tmp_path):
    prepared, _ = run("cuma", toy_config(max_steps=1), tmp_path / "run")
    weights = checkpoint.gathered_weights(OtherProcessFails(), prepared)
    trainable = {f"model.{name}" for name in prepared.trainable_parameters()}
    assert trainable <= weights.keys()
    frozen = {name for name, p in prepared.named_parameters(remove_duplicate=False) if not p.requires_grad}
    assert frozen and not frozen & weights.keys()  # the base model stays where it is
    prepared.save(tmp_path / "out", state_dict=weights)
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
    some = sorted(trainable)[0]
    name = re.escape(some.removeprefix("model.").replace(".default", ""))
    with pytest.raises(ValueError, match=f"lacks 1 of its tensors.*{name}"):
        prepared.save(tmp_path / "lacking", state_dict={k: v for k, v in weights.items() if k != some})


def test_saving_a_state_dict_of_another_module_is_refused(tmp_path):
    prepared, _ = run("lora", toy_config(max_steps=1), tmp_path / "run")
    with pytest.raises(ValueError, match="outside the wrapped model"):
        prepared.save(tmp_path / "out", state_dict={"layer.weight": torch.zeros(1)})
