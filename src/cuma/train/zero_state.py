"""DeepSpeed ZeRO under cuma's trainer: the config it needs, and the whole run's state for checkpoints.

Under ZeRO every process holds only its partition of the optimizer state, flattened per parameter group,
and (bf16) float32 master weights that the module's bf16 copies round (`DeepSpeed ZeRO
<https://deepspeed.readthedocs.io/en/latest/zero3.html>`_). DeepSpeed's own checkpoints keep those
partitions as pickles, one per process; cuma's checkpoints hold the whole run's state in safetensors
(cuma/train/checkpoint.py). So the optimizer state is gathered here into the layout of torch's full
optimizer state dict, the one FSDP writes too (``{"state": {name: {"step", "exp_avg", "exp_avg_sq"}},
"param_groups": [{..., "params": [name, ...]}]}``, names as in the unwrapped model), the weights are
the masters, and a resume scatters both back into the partitions.

The tensors go through DeepSpeed's public ``safe_get_full_*`` / ``safe_set_full_*`` functions. Three
things have no public API and use DeepSpeed's internals (the version is pinned in constraints.txt, and
tests/test_multiprocess_deepspeed.py covers ZeRO-2 and ZeRO-3): the parameters of each group and the
flat partitions the state is keyed by (``bit16_groups`` and ``single_partition_of_fp32_groups`` under
ZeRO-1/2, ``fp16_groups`` and ``fp32_partitioned_groups_flat`` under ZeRO-3); creating the state
before the first step of a resumed run (torch's AdamW creates it lazily, and DeepSpeed can set a
parameter's state only where it exists); and, under ZeRO-1/2, linking each parameter to its group's
state (``_lazy_init_hp_params_optimizer_state``; `_link_states` says why DeepSpeed's own linking is
not enough).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch import nn

from cuma.config import TrainConfig
from cuma.errors import ConfigError

ADAM_STATES = ("exp_avg", "exp_avg_sq")
"""The per-element state of AdamW (cuma.train.optim.build_optimizer), partitioned like the parameters."""


def gather_zero_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The full optimizer state on every process (all of them must call this: it is a collective)."""
    from deepspeed.utils import safe_get_full_optimizer_state

    zero = _zero_optimizer(optimizer)
    names = _names(model)
    step = _step(zero.optimizer)
    if step is not None:
        _link_states(zero)
    state: dict[str, dict[str, torch.Tensor]] = {}
    param_groups = []
    for group, params in zip(zero.optimizer.param_groups, _group_params(zero), strict=True):
        for param in params:
            entry: dict[str, torch.Tensor] = {}
            if step is not None:  # before the first step AdamW has no state yet
                entry["step"] = step.clone()
                for key in ADAM_STATES:
                    entry[key] = safe_get_full_optimizer_state(param, key).detach().cpu()
            state[names[id(param)]] = entry
        hyper = {key: value for key, value in group.items() if key != "params"}
        param_groups.append({**hyper, "params": [names[id(param)] for param in params]})
    return {"state": state, "param_groups": param_groups}


def load_zero_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, full: dict[str, Any], where: str
) -> None:
    """Scatter a state `gather_zero_state` made (read from ``where``) into this run's partitions (every
    process calls it)."""
    from deepspeed.utils import safe_set_full_optimizer_state

    zero = _zero_optimizer(optimizer)
    base = zero.optimizer
    names = _names(model)
    groups = _group_params(zero)
    saved_groups = full["param_groups"]
    if len(saved_groups) != len(base.param_groups):
        raise ValueError(
            f"{where}: the checkpoint's optimizer has {len(saved_groups)} parameter groups, this run's "
            f"{len(base.param_groups)}"
        )
    for group, params, saved in zip(base.param_groups, groups, saved_groups, strict=True):
        expected = [names[id(param)] for param in params]
        if saved["params"] != expected:
            raise ValueError(
                f"{where}: optimizer group {saved.get('name')!r} holds other parameters than this run's"
            )
        group.update({key: value for key, value in saved.items() if key != "params"})
    steps = [entry["step"] for entry in full["state"].values() if "step" in entry]
    if not steps:  # saved before the first optimizer step: nothing to restore
        return
    for flat in _flat_partitions(zero):  # the state AdamW would create at its first step
        base.state[flat] = {"step": steps[0].clone(), **{key: torch.zeros_like(flat) for key in ADAM_STATES}}
    _link_states(zero)
    for params in groups:
        for param in params:
            for key in ADAM_STATES:
                value = full["state"][names[id(param)]][key]
                safe_set_full_optimizer_state(param, value.to(param.device, torch.float32), key)


def trainable_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the trainable weights as they are now (float32 for cuma's adapters), by name."""
    return {name: param.detach().clone() for name, param in _trainable(model)}


def set_zero_masters(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Make DeepSpeed's float32 master weights these exact values (every process calls it).

    Under bf16 DeepSpeed builds its masters from the module it has cast to bf16, which rounds the weights
    a run starts from (fresh, or loaded from a checkpoint) to 8 significant bits; `trainable_weights`,
    taken before ``accelerator.prepare``, keeps them, so a resumed run continues from the weights the
    checkpoint holds, as under DDP and FSDP.
    """
    from deepspeed.utils import safe_set_full_fp32_param

    for name, param in _trainable(model):
        safe_set_full_fp32_param(param, weights[name].to(torch.float32))


def gather_zero_weights(model: nn.Module, main_process: bool) -> dict[str, torch.Tensor] | None:
    """The trainable weights of the model DeepSpeed wraps, whole, each as its float32 master (under bf16
    the module's own copy is the master rounded to bf16, and a checkpoint should hold what the optimizer
    holds), with the module's buffers (never partitioned); on the main process, None elsewhere. The frozen
    base is not gathered. Every process calls it (gathering a master is a collective)."""
    from deepspeed.utils import safe_get_full_fp32_param

    masters = {name: safe_get_full_fp32_param(param).detach().cpu() for name, param in _trainable(model)}
    if not main_process:
        return None
    module = _unwrapped(model)
    kept = module.state_dict().keys()  # persistent buffers only; parameters are placeholders under ZeRO-3
    buffers = module.named_buffers(remove_duplicate=False)
    return {**{name: b.detach().cpu() for name, b in buffers if name in kept}, **masters}


def _link_states(zero: Any) -> None:
    """Point every parameter's fragment at the optimizer state of its group (ZeRO-1/2; ZeRO-3 reads the
    state directly). DeepSpeed links them once, after its first step of the *first* group, so with
    several groups (cuma's experts, routers, biases) the later groups' parameters never see their state
    and ``safe_get_full_optimizer_state`` fails for them; linking again once every group has state fixes
    that."""
    if hasattr(zero, "_lazy_init_hp_params_optimizer_state"):
        zero._hp_optimizer_states_linked = False
        zero._lazy_init_hp_params_optimizer_state()


def _zero_optimizer(optimizer: torch.optim.Optimizer) -> Any:
    """DeepSpeed's ZeRO optimizer inside accelerate's wrappers (AcceleratedOptimizer -> DeepSpeed's)."""
    inner = optimizer
    while not hasattr(inner, "bit16_groups") and not hasattr(inner, "fp16_groups"):
        if not hasattr(inner, "optimizer"):
            raise TypeError(f"{type(optimizer).__name__} holds no DeepSpeed ZeRO optimizer")
        inner = inner.optimizer
    return inner


def _group_params(zero: Any) -> list[list[nn.Parameter]]:
    """The model parameters of each of the optimizer's groups, in order. ZeRO-3 splits a group into
    sub-groups (``fp16_groups``, mapped back by ``sub_group_to_group_id``)."""
    if hasattr(zero, "bit16_groups"):
        return [list(params) for params in zero.bit16_groups]
    groups: list[list[nn.Parameter]] = [[] for _ in zero.optimizer.param_groups]
    for sub_group, params in enumerate(zero.fp16_groups):
        groups[zero.sub_group_to_group_id[sub_group]].extend(params)
    return groups


def _flat_partitions(zero: Any) -> list[torch.Tensor]:
    """This process's flat float32 partitions, the tensors the inner optimizer's state is keyed by."""
    if hasattr(zero, "single_partition_of_fp32_groups"):
        return list(zero.single_partition_of_fp32_groups)
    return list(zero.fp32_partitioned_groups_flat)


def _names(model: nn.Module) -> dict[int, str]:
    """Each parameter's name in the model DeepSpeed wraps (``engine.module``), by identity."""
    return {id(param): name for name, param in _unwrapped(model).named_parameters()}


def _trainable(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """The trainable parameters of the model DeepSpeed wraps (or of ``model`` itself), by name."""
    return ((name, p) for name, p in _unwrapped(model).named_parameters() if p.requires_grad)


def _unwrapped(model: nn.Module) -> nn.Module:
    """``engine.module`` for a DeepSpeed engine, else ``model``: the names checkpoints use."""
    return getattr(model, "module", model)


def _step(base: torch.optim.Optimizer) -> torch.Tensor | None:
    """The step count of the (lockstep) optimizer; None before its first step."""
    for entry in base.state.values():
        if "step" in entry:
            return torch.as_tensor(entry["step"]).detach().cpu()
    return None


@contextmanager
def gathered_for_generation(accelerator: Accelerator, model: nn.Module) -> Iterator[None]:
    """Every weight whole on every process while a rollout generates (ZeRO-3; a no-op below it).

    Generation calls the model token by token outside the engine's training forward, where a ZeRO-3
    weight that a module reads without calling the submodule that owns it (the router's first layer) is
    still partitioned. Gathering them all for the rollout is what TRL's GRPO trainer does too
    (``unwrap_model_for_generation``), at the cost of holding the whole model on each process meanwhile.
    """
    if (
        accelerator.distributed_type != DistributedType.DEEPSPEED
        or accelerator.state.deepspeed_plugin.zero_stage < 3
    ):
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters())):
        yield


def configure_zero(plugin: Any, config: TrainConfig) -> None:
    """Make accelerate's DeepSpeed config agree with cuma's trainer, or stop before any training.

    DeepSpeed clips the gradients and steps inside the last micro-batch's backward, so its
    ``gradient_clipping`` is ``train.max_grad_norm`` (filled in when ``auto``); cuma accumulates
    micro-batches itself, so DeepSpeed's own ``gradient_accumulation_steps`` is 1. (A checkpoint gathers
    the trainable weights' float32 masters itself, `gather_zero_weights`, so ZeRO-3 needs no 16-bit
    consolidation of the whole model, ``zero3_save_16bit_model``.)
    """
    ds = plugin.deepspeed_config
    where = "the DeepSpeed config (accelerate's deepspeed_config)"
    clipping = ds.get("gradient_clipping", "auto")
    if clipping == "auto":
        ds["gradient_clipping"] = config.max_grad_norm
    elif float(clipping) != config.max_grad_norm:
        raise ConfigError(
            f"{where}: gradient_clipping={clipping} but train.max_grad_norm={config.max_grad_norm}; "
            "DeepSpeed clips the gradients itself, so set them equal"
        )
    accumulation = ds.get("gradient_accumulation_steps", "auto")
    if accumulation == "auto":
        ds["gradient_accumulation_steps"] = 1
    elif int(accumulation) != 1:
        raise ConfigError(
            f"{where}: gradient_accumulation_steps={accumulation}; cuma accumulates micro-batches itself "
            "(train.grad_accum), so set it to 1"
        )
