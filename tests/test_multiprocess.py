"""Data-parallel training on CPU: two ``torchrun`` processes must form one group and train one model,
not two copies that each believe they are alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
