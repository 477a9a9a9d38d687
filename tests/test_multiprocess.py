"""Data-parallel training on CPU: two ``torchrun`` processes must form one group and train one model,
not two copies that each believe they are alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "gss-cuma.yaml"


def test_two_cpu_processes_train_one_model(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "ACCELERATE_USE_CPU"}
    env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "cuma", "train", "--config", str(CONFIG), "--method", "cuma", "--quick",
        f"output_dir={tmp_path}",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    checkpoint = max((tmp_path / "train" / "cuma-seed42" / "checkpoints").iterdir())
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["run_shape"]["num_processes"] == 2
    rng_files = sorted(path.name for path in checkpoint.glob("rng-*.safetensors"))
    assert rng_files == ["rng-0.safetensors", "rng-1.safetensors"]
    assert done.stdout.count("final loss") == 1  # only the main process reports


@pytest.mark.parametrize("objective", ["dpo", "grpo"])
def test_two_cpu_processes_train_the_preference_objectives(tmp_path: Path, objective: str) -> None:
    """DPO (reference = adapters off) and GRPO (each prompt's group sampled on one process, so its
    statistics are the whole group's) run in the same process group as SFT."""
    env = {key: value for key, value in os.environ.items() if key != "ACCELERATE_USE_CPU"}
    env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "cuma", "train", "--config", str(CONFIG), "--method", "cuma", "--quick",
        f"output_dir={tmp_path}", f"train.objective={objective}", "train.max_steps=2", "train.batch_size=2",
        "grpo.num_generations=2", "grpo.max_new_tokens=2",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = max((tmp_path / "train" / f"cuma-{objective}-seed42" / "checkpoints").iterdir())
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["run_shape"]["num_processes"] == 2 and checkpoint.name.endswith("00000002")
    assert done.stdout.count("final loss") == 1
