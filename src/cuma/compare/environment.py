"""Where a comparison runs: its processes, and what the report records (package versions, machine)."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

import torch

from cuma.processes import process_state

PACKAGES = ("cuma", "torch", "transformers", "peft", "accelerate", "numpy", "pandas", "scikit-learn", "scipy")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed as a distribution"
    return found


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "processes": process_state().num_processes,
    }
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return info
