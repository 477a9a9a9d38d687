"""FSDP2 on CPU: two processes with the adapters and the base sharded (accelerate's own FSDP2 preparation,
``fully_shard`` on gloo) train what one unsharded process trains, and a resume from a mid-run FSDP2
checkpoint (gathered weights, gathered optimizer state) ends where the uninterrupted run ends; with
gradient checkpointing too. One
process accumulates two micro-batches of 2 where two processes take one each: the same rows per step, and
the same micro-batches for CuMA's router losses (a load-balancing loss is not linear in its batch).

accelerate 1.15 picks FSDP only for GPU-like devices: on CPU its state stays ``MULTI_CPU`` and
``ACCELERATE_USE_FSDP`` is ignored without a word (the model is wrapped in DDP). torch's ``fully_shard``
itself runs on CPU with gloo, and so does accelerate's FSDP2 code once the state says FSDP; so this file,
run as a script under ``torchrun`` (``__main__`` below), sets the state to FSDP after accelerate built its
plugin from the ``FSDP_*`` environment, as it would on a GPU machine, and then runs ``cuma train``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from gather_probe import gathered_counts, report_gathered

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "gss-cuma.yaml"
SHARD_LINE = "fsdp2 shard of"
FSDP_ENV = {
    "ACCELERATE_USE_FSDP": "true",
    "FSDP_VERSION": "2",
    "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
    "FSDP_RESHARD_AFTER_FORWARD": "true",
    "FSDP_STATE_DICT_TYPE": "FULL_STATE_DICT",
}


def _train(out: Path, processes: int, method: str, *extra: str, fsdp: bool = True) -> str:
    """Run ``cuma train`` (through this file's ``__main__``); returns its standard output."""
    env = {key: value for key, value in os.environ.items() if key != "ACCELERATE_USE_CPU"}
    env["OMP_NUM_THREADS"] = "1"
    if fsdp:
        env.update(FSDP_ENV)
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    command = [
        sys.executable, *launcher, __file__, "train", "--config", str(CONFIG), "--method", method, "--quick",
        f"output_dir={out}", "train.max_steps=2", "train.batch_size=2", f"train.grad_accum={3 - processes}",
        f"adapter_overrides.{method}.dropout=0.0", "train.save_every=1", "train.keep_checkpoints=null",
        *extra,
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _weights(out: Path, method: str, step: int) -> dict[str, torch.Tensor]:
    (weights,) = (out / "train" / f"{method}-seed42" / "checkpoints" / f"step-{step:08d}" / "model").glob(
        "*.safetensors"
    )
    return load_file(weights)


@pytest.mark.parametrize("method", ["lora", "cuma"])
def test_fsdp2_trains_what_one_process_does_and_resumes_exactly(tmp_path: Path, method: str) -> None:
    one = _train(tmp_path / "one", 1, method, fsdp=False)
    assert SHARD_LINE not in one
    two = _train(tmp_path / "two", 2, method)
    assert f"{SHARD_LINE} 2" in two  # the adapters really were split over the two processes
    expected, sharded = _weights(tmp_path / "one", method, 2), _weights(tmp_path / "two", method, 2)
    assert expected.keys() == sharded.keys() and expected
    # Each save gathered the adapter alone (its saved tensors), never the frozen base.
    assert gathered_counts(two) == [sum(t.numel() for t in expected.values())] * 2
    assert any(tensor.abs().sum() > 0 for name, tensor in expected.items() if "_B" in name)
    for name in expected:
        torch.testing.assert_close(sharded[name], expected[name], rtol=1e-5, atol=1e-5, msg=name)

    # The run stopped after step 1's checkpoint: resume it under FSDP2 and finish step 2 again.
    root = tmp_path / "two" / "train" / f"{method}-seed42" / "checkpoints"
    step_1 = root / "step-00000001"
    assert '"keys": "name"' in (step_1 / "optimizer.json").read_text()  # the gathered optimizer state
    for path in sorted((root / "step-00000002").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (root / "step-00000002").rmdir()
    _train(tmp_path / "two", 2, method, "--resume")
    resumed = _weights(tmp_path / "two", method, 2)
    for name in sharded:
        assert torch.equal(resumed[name], sharded[name]), name


def test_fsdp2_with_gradient_checkpointing_trains_what_one_process_does(tmp_path: Path) -> None:
    checkpointed = "train.gradient_checkpointing=true"
    _train(tmp_path / "one", 1, "cuma", checkpointed, fsdp=False)
    assert f"{SHARD_LINE} 2" in _train(tmp_path / "two", 2, "cuma", checkpointed)
    expected, sharded = _weights(tmp_path / "one", "cuma", 2), _weights(tmp_path / "two", "cuma", 2)
    assert expected.keys() == sharded.keys() and expected
    for name in expected:
        torch.testing.assert_close(sharded[name], expected[name], rtol=1e-5, atol=1e-5, msg=name)


def _fsdp_state_on_cpu() -> None:
    """After each ``Accelerator`` is built, make its state FSDP with the plugin accelerate reads from the
    ``FSDP_*`` environment, and report how much of the first adapter weight each process holds."""
    from accelerate import Accelerator, PartialState
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
    from torch.distributed.tensor import DTensor

    built, prepare = Accelerator.__init__, Accelerator.prepare

    def init(self: Accelerator, *args: object, **kwargs: object) -> None:
        built(self, *args, **kwargs)
        for shared in (PartialState._shared_state, AcceleratorState._shared_state):
            shared["distributed_type"] = DistributedType.FSDP
        AcceleratorState._shared_state["fsdp_plugin"] = FullyShardedDataParallelPlugin()

    def prepared(self: Accelerator, *args: object) -> tuple:
        out = prepare(self, *args)
        trainable = next(p for p in out[0].parameters() if p.requires_grad)
        if isinstance(trainable, DTensor) and self.is_main_process:
            print(f"{SHARD_LINE} {trainable.numel() // trainable.to_local().numel()}", flush=True)
        return out

    Accelerator.__init__, Accelerator.prepare = init, prepared


if __name__ == "__main__":
    from cuma.cli import main

    if os.environ.get("ACCELERATE_USE_FSDP") == "true":
        _fsdp_state_on_cpu()
        report_gathered()
    main(sys.argv[1:])
