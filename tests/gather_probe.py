"""For the multi-process workers: report how many weight elements each checkpoint gathered.

`report_gathered` wraps `cuma.train.checkpoint.gathered_weights` so the main process prints one
`GATHER_LINE` per save; `gathered_counts` reads them back from the worker's output. A test compares them
with the saved adapter's size: the frozen base model must never be gathered.
"""

from __future__ import annotations

import re

import torch
from accelerate import Accelerator
from torch import nn

GATHER_LINE = "checkpoint gathered elements:"


def report_gathered() -> None:
    from cuma.train import checkpoint

    gather = checkpoint.gathered_weights

    def counted(accelerator: Accelerator, model: nn.Module) -> dict[str, torch.Tensor] | None:
        weights = gather(accelerator, model)
        if accelerator.is_main_process:
            print(f"{GATHER_LINE} {sum(tensor.numel() for tensor in weights.values())}", flush=True)
        return weights

    checkpoint.gathered_weights = counted


def gathered_counts(output: str) -> list[int]:
    """Every count `report_gathered` printed, in order."""
    return [int(count) for count in re.findall(rf"{re.escape(GATHER_LINE)} (\d+)", output)]
