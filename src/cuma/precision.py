"""Which compute precision a run uses: ``auto`` picks bf16 only where bf16 arithmetic is native.

bf16 autocast pays only on hardware with bf16 units: a CUDA device that supports bf16, or a CPU with
AVX512-BF16 or AMX (AVX-512 alone is not enough). Elsewhere PyTorch emulates bf16 and a bf16 matmul is
many times slower than fp32 (about 20x on an AVX2-only CPU), so ``auto`` trains in fp32 there. Asking
for ``bf16`` on such hardware is allowed and warns once with the slowdown measured on this machine.

Scoring resolves ``auto`` to fp32 on every device: bf16 option probabilities differ from fp32 ones by
up to 0.05, enough to move accuracy and log-loss, so bf16 scoring is asked for, never a default.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import torch

from cuma.config import Precision
from cuma.processes import cpu_only

PRECISIONS: tuple[str, ...] = get_args(Precision)
"""The values ``train.precision`` and ``eval.precision`` allow."""
Purpose = Literal["train", "eval"]
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""/proc/cpuinfo flags of native bf16 arithmetic on x86 CPUs."""
CPUINFO = Path("/proc/cpuinfo")
EVAL_AUTO_REASON = "auto: scoring in fp32 (bf16 option probabilities differ from fp32 by up to 0.05)"

logger = logging.getLogger("cuma.precision")


@dataclass(frozen=True)
class ResolvedPrecision:
    """The precision a run computes in, and why, for its report.

    Attributes:
        name: ``bf16`` (autocast) or ``fp32``.
        reason: what decided it, e.g. ``auto: CPU has avx512_bf16``.
    """

    name: str
    reason: str


@dataclass(frozen=True)
class Bf16Support:
    """Whether bf16 arithmetic is native on a device type, and the evidence (a flag, a CUDA query or a
    timing)."""

    native: bool
    evidence: str


def default_device_type() -> str:
    """The device type a run computes on: ``cpu`` (`cuma.processes.cpu_only`), else the accelerator's."""
    if cpu_only():
        return "cpu"
    return torch.accelerator.current_accelerator().type


def resolve_precision(requested: str, purpose: Purpose, device_type: str | None = None) -> ResolvedPrecision:
    """Resolve ``train.precision`` (``purpose="train"``) or ``eval.precision`` (``"eval"``) on
    ``device_type`` (default: `default_device_type`); see the module docstring for the rules."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested == "fp32":
        return ResolvedPrecision("fp32", "asked for")
    if requested == "auto" and purpose == "eval":
        return ResolvedPrecision("fp32", EVAL_AUTO_REASON)
    device_type = device_type or default_device_type()
    support = bf16_support(device_type)
    if requested == "bf16":
        if not support.native:
            warn_emulated_bf16(device_type)
        return ResolvedPrecision("bf16", f"asked for; {support.evidence}")
    return ResolvedPrecision("bf16" if support.native else "fp32", f"auto: {support.evidence}")


@functools.cache
def bf16_support(device_type: str) -> Bf16Support:
    """Native bf16 on ``device_type``: CUDA's own answer, the CPU's flags, else one timing (cached)."""
    if device_type == "cuda":
        name = torch.cuda.get_device_name()
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return Bf16Support(native, f"CUDA device {name} {'has' if native else 'lacks'} native bf16")
    if device_type == "cpu":
        flags = cpu_flags()
        if flags is not None:
            found = [flag for flag in CPU_BF16_FLAGS if flag in flags]
            if found:
                return Bf16Support(True, f"CPU has {', '.join(found)}")
            capability = torch.backends.cpu.get_cpu_capability()
            return Bf16Support(False, f"CPU ({capability}) lacks {' and '.join(CPU_BF16_FLAGS)}")
    ratio = bf16_slowdown(device_type)
    return Bf16Support(ratio < 1.0, f"a bf16 matmul on {device_type} took {ratio:.2f}x the fp32 time")


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo, or None where there is none (not Linux)."""
    try:
        text = CPUINFO.read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.partition(":")[2].split())
    return None


@functools.cache
def bf16_slowdown(device_type: str, size: int = 512, repeats: int = 3) -> float:
    """Time of a [size/4, size] x [size, size] bf16 matmul over the fp32 one on ``device_type``, best of
    ``repeats`` after a warm-up, at the current thread count; measured once per process."""
    device = torch.device(device_type)
    seconds = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(size // 4, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        timings = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            a @ b
            if device_type != "cpu":
                torch.accelerator.synchronize()
            timings.append(time.perf_counter() - start)
        seconds[dtype] = min(timings[1:])
    return seconds[torch.bfloat16] / seconds[torch.float32]


@functools.cache
def warn_emulated_bf16(device_type: str) -> None:
    """Warn once per process and device type that bf16 is emulated there, with the measured cost."""
    logger.warning(
        "precision=bf16 on %s: %s, so bf16 is emulated; a bf16 matmul measured %.1fx the fp32 time here. "
        "Use precision=auto or fp32 unless you need bf16.",
        device_type,
        bf16_support(device_type).evidence,
        bf16_slowdown(device_type),
    )
