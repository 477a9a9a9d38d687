"""scripts/gpu_check.sh: valid bash; without a GPU it says so and exits cleanly, having written nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GPU_CHECK = ROOT / "scripts" / "gpu_check.sh"


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHON": sys.executable, **env}
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT, env=environment)


def test_gpu_check_is_valid_bash() -> None:
    assert run("bash", "-n", str(GPU_CHECK)).returncode == 0


def test_gpu_check_without_a_gpu_says_so_and_exits_cleanly(tmp_path: Path) -> None:
    result = run(str(GPU_CHECK), CUDA_VISIBLE_DEVICES="", CUMA_GPU_CHECK_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "gpu_check: nothing to check:" in result.stdout
    assert "no CUDA device is visible" in result.stdout or "built without CUDA" in result.stdout
    assert "use --cpu" in result.stdout
    assert not any(tmp_path.iterdir()), "nothing is trained or written without a GPU"


def test_gpu_check_rejects_unknown_options() -> None:
    result = run(str(GPU_CHECK), "--fast")
    assert result.returncode == 2 and "usage: scripts/gpu_check.sh [--cpu]" in result.stderr
