"""One process with a global batch of 4 and two ``torchrun`` processes with 2 each train the same
adapter (fp32, to 1e-5), for SFT and for DPO: the loss is the mean over the whole global batch's units,
and the data of a step is the same rows in both runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "gss-cuma.yaml"


def _train(out: Path, processes: int, objective: str) -> dict[str, torch.Tensor]:
    env = {key: value for key, value in os.environ.items() if key != "ACCELERATE_USE_CPU"}
    env["OMP_NUM_THREADS"] = "1"
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    command = [
        sys.executable, *launcher, "-m", "cuma", "train", "--config", str(CONFIG), "--method", "lora",
        "--quick", f"output_dir={out}", f"train.objective={objective}", "train.max_steps=2",
        f"train.batch_size={4 // processes}", "adapter_overrides.lora.dropout=0.0",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    stem = "lora" if objective == "sft" else f"lora-{objective}"
    checkpoint = max((out / "train" / f"{stem}-seed42" / "checkpoints").iterdir())
    (weights,) = (checkpoint / "model").glob("*.safetensors")
    return load_file(weights)


@pytest.mark.parametrize("objective", ["sft", "dpo"])
def test_two_processes_train_what_one_does(tmp_path: Path, objective: str) -> None:
    one = _train(tmp_path / "one", 1, objective)
    two = _train(tmp_path / "two", 2, objective)
    assert one.keys() == two.keys() and one
    # B starts at zero: the two steps really moved the adapter.
    assert any(tensor.abs().sum() > 0 for name, tensor in one.items() if "_B" in name)
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-5, msg=name)
