"""AdamW parameter groups with separate learning rates, and a schedule sized by the real step count.

Every method's ``parameter_groups()`` names its groups and each gets its own rate, and the schedule is
built once the real step count is known, both unlike the authors' trainer (see docs/design.md); weight
decay is off for biases and norm weights (1-D tensors), as in nanoGPT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import get_scheduler

from cuma.config import TrainConfig


def group_lr(group: str, config: TrainConfig) -> float:
    """Routers and the demographic projection may have their own rate; everything else uses ``lr``."""
    specific = {"routers": config.router_lr, "projection": config.projection_lr}.get(group)
    return config.lr if specific is None else specific


def build_optimizer(groups: dict[str, list[nn.Parameter]], config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over named groups, each split into decayed (matrices) and undecayed (biases, norms) params.

    Every ``param_group`` carries a ``name`` ("experts", "experts/no_decay", ...) so logs and tests can
    tell them apart.
    """
    param_groups = []
    for name, params in groups.items():
        lr = group_lr(name, config)
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        if decay:
            param_groups.append(
                {"name": name, "params": decay, "lr": lr, "weight_decay": config.weight_decay}
            )
        if no_decay:
            param_groups.append(
                {"name": f"{name}/no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0}
            )
    if not param_groups:
        raise ValueError("the method has no trainable parameters; nothing to optimise")
    return torch.optim.AdamW(param_groups)


@dataclass(frozen=True)
class StepPlan:
    """How many optimizer steps a run takes, from the prepared (per-process) data loader's length."""

    micro_batches_per_epoch: int
    steps_per_epoch: int  # the last group of an epoch may hold fewer than grad_accum micro-batches
    total_steps: int
    warmup_steps: int


def plan_steps(micro_batches_per_epoch: int, config: TrainConfig) -> StepPlan:
    if micro_batches_per_epoch < 1:
        raise ValueError("the training set yields no batches; check data.n_train and train.batch_size")
    steps_per_epoch = math.ceil(micro_batches_per_epoch / config.grad_accum)
    total = math.ceil(config.epochs * steps_per_epoch)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    warmup = round(config.warmup_ratio * total)
    return StepPlan(micro_batches_per_epoch, steps_per_epoch, total, warmup)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, plan: StepPlan):
    """A transformers schedule over exactly ``plan.total_steps`` optimizer steps.

    ``TrainConfig`` admits only the schedules this call can build, and no warm-up for those that ignore it.
    """
    return get_scheduler(
        config.schedule,
        optimizer,
        num_warmup_steps=plan.warmup_steps,
        num_training_steps=plan.total_steps,
    )
