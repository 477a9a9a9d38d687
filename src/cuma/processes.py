"""The processes of a run, as ``accelerate`` sees them.

Accelerate forms a multi-process group on CPU (``torchrun`` on a machine without a GPU) only when told
``cpu=True``; otherwise every process believes it is alone and trains on all the data by itself. The
trainer and ``cuma compare`` both take their state from here, so they agree on it.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from accelerate import PartialState
from accelerate.utils import gather_object, parse_flag_from_env
from torch import nn
from torch.distributed.tensor import DTensor


def cpu_only() -> bool:
    """True under ``accelerate launch --cpu`` and on a machine without an accelerator."""
    return parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.accelerator.is_available()


def process_state() -> PartialState:
    """This run's processes; the state is shared by every later ``Accelerator`` of the process."""
    return PartialState(cpu=cpu_only())


def log_from_main_process() -> bool:
    """Set up command-line logging: INFO on the main process, warnings only on the others, since every
    process of a ``torchrun`` / ``accelerate launch`` run executes the command. True on the main one."""
    main = process_state().is_main_process
    logging.basicConfig(
        level=logging.INFO if main else logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )
    return main


def gather_objects(value: Any) -> list[Any]:
    """Every process's ``value`` (picklable), in process order, on every process."""
    return gather_object([value])


def is_sharded(model: nn.Module) -> bool:
    """Whether this process holds only shards of ``model``'s parameters (FSDP2's DTensors, DeepSpeed
    ZeRO-3's partitioned parameters): every forward then needs every process, so the processes cannot
    share out work on it."""
    return any(isinstance(p, DTensor) or hasattr(p, "ds_id") for p in model.parameters())
