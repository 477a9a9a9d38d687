"""Atomic, verified training checkpoints: the model folder, optimizer, scheduler, RNG states, data position.

Layout of ``<output_dir>/checkpoints/step-00000012/``::

    model/                                # PreparedModel.save, read by cuma.methods.load_trained
    optimizer.safetensors, optimizer.json # AdamW moments (tensors) and param groups (hyperparameters)
    rng-<rank>.safetensors, rng-<rank>.json  # torch/CUDA, numpy and python RNG states, per process
    trainer_state.json                    # data position, scheduler state, the run's shape
    manifest.json                         # sha256 of every other file, written last

A checkpoint is written into ``.tmp-step-...`` in the same directory, fsynced, then renamed into place,
so a failed save (a full disk) leaves the previous checkpoint as it was. Nothing is pickled: tensors go
to safetensors, everything else to JSON. With several processes, each phase of a save ends with the
processes agreeing on its outcome, so a failure on one process raises on all instead of leaving the
others waiting at a barrier. `verify_checkpoint` recomputes every checksum before a resume, so a flipped
bit or a truncated file is found (and `newest_valid_checkpoint` falls back to the previous checkpoint).

What is written is the whole run's state, not the main process's part of it: the method's weights are
gathered whole on every save (`gathered_weights`: the local module under DDP, the shards gathered under
FSDP, the ZeRO-3 partitions under DeepSpeed; the frozen base is never gathered) and the main process
writes them.
Under FSDP and DeepSpeed ZeRO the optimizer state is gathered too, into torch's full optimizer state
dict keyed by parameter name (FSDP: torch's own; ZeRO: cuma/train/zero_state.py), and a resume
partitions it again. A resume loads the saved weights into the model before accelerate prepares it
(`cuma.train.trainer`), so each strategy shards or replicates whole, exact weights itself.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from cuma.atomic import atomic_write_text, fsync_path
from cuma.methods import PreparedModel
from cuma.sidecar import sha256_file
from cuma.train.zero_state import gather_zero_state, gather_zero_weights, load_zero_state

STATE_FILE = "trainer_state.json"
MANIFEST_FILE = "manifest.json"
MODEL_DIR = "model"
PREFIX = "step-"
TMP_PREFIX = ".tmp-"
OPTIMIZER_KEYS = {False: "index", True: "name"}  # sharded (FSDP, ZeRO) -> how optimizer.json keys parameters


# Train settings the restored optimizer and scheduler states carry, so a resume cannot change them.
OPTIMIZER_STATE_SETTINGS = (
    "train.lr",
    "train.router_lr",
    "train.projection_lr",
    "train.weight_decay",
    "train.schedule",
    "train.warmup_ratio",
)


class CheckpointError(ValueError):
    """A checkpoint that is incomplete, altered or unreadable; the message names the file."""


@dataclass(frozen=True)
class Position:
    """Where training stands after ``global_step`` optimizer steps: ``batch_in_epoch`` micro-batches of
    epoch ``epoch`` have been consumed."""

    global_step: int
    epoch: int
    batch_in_epoch: int


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints (a temp dir of an interrupted save is ignored), oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def save_checkpoint(
    accelerator: Accelerator,
    root: Path,
    prepared: PreparedModel,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    position: Position,
    run_shape: dict[str, Any],
    keep: int | None,
) -> Path:
    """Write a checkpoint atomically and prune all but the ``keep`` newest; returns its path.

    ``model`` is ``prepared`` as ``accelerator.prepare`` returned it; every process must call this, since
    gathering its state (and, under FSDP, the optimizer's) takes all of them.
    """
    name = f"{PREFIX}{position.global_step:08d}"
    final, tmp = root / name, root / f"{TMP_PREFIX}{name}"
    main = accelerator.is_main_process
    weights = gathered_weights(accelerator, model)
    sharded = _optimizer_sharded(accelerator)
    optimizer_state = _full_optimizer_state(accelerator, model, optimizer)
    if main:
        shutil.rmtree(tmp, ignore_errors=True)  # debris of an earlier failed save
    accelerator.wait_for_everyone()

    def write() -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        _save_rng(tmp, accelerator.process_index)
        if main:
            prepared.save(tmp / MODEL_DIR, state_dict=weights)
            _save_optimizer(tmp, optimizer_state, OPTIMIZER_KEYS[sharded])
            state = {
                "position": asdict(position),
                "scheduler": scheduler.state_dict(),
                "run_shape": run_shape,
            }
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))

    def commit() -> None:
        if main:
            _write_manifest(tmp)
            _fsync_tree(tmp)
            _replace_dir(tmp, final)
            if keep is not None:
                for old in list_checkpoints(root)[:-keep]:
                    shutil.rmtree(old)

    try:
        _on_all_processes(accelerator, write, f"writing {tmp}")
    except BaseException:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    _on_all_processes(accelerator, commit, f"moving {tmp} into place")
    return final


def _on_all_processes(accelerator: Accelerator, work: Callable[[], None], what: str) -> None:
    """Run ``work`` here, then agree with the other processes (this is the barrier): if it failed on any
    process, every process raises, the failing one with its own error."""
    error: Exception | None = None
    try:
        work()
    except Exception as exc:  # re-raised below, once every process knows
        error = exc
    failed = accelerator.reduce(torch.tensor(float(error is not None), device=accelerator.device), "sum")
    if error is not None:
        raise error
    if failed.item():
        raise RuntimeError(f"{what} failed on another process; see its error")


def load_checkpoint(
    accelerator: Accelerator,
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    run_shape: dict[str, Any],
    allow_changed: set[str] = frozenset(),
) -> tuple[Position, dict[str, list[Any]]]:
    """Restore the optimizer, scheduler, RNG states and position that ``save_checkpoint`` wrote (verify
    it with `verify_checkpoint` first) into the prepared ``model``'s run; the model's weights are loaded
    before it is prepared (`cuma.train.trainer`).

    Every entry of ``run_shape`` must equal the checkpoint's, except those in ``allow_changed``; all
    differences are listed in one error. Returns the position and the allowed changes
    (key -> [checkpoint value, this run's value]).
    """
    frozen = sorted(allow_changed & set(OPTIMIZER_STATE_SETTINGS))
    if frozen:
        raise ValueError(
            f"{frozen} cannot change on resume: the optimizer and schedule restored from the checkpoint "
            "carry them; start a new run instead"
        )
    state = json.loads((path / STATE_FILE).read_text())
    diffs = check_run_shape(path, state["run_shape"], run_shape, allow_changed)
    _load_optimizer(path, model, optimizer, accelerator.distributed_type)
    scheduler.load_state_dict(state["scheduler"])
    _load_rng(path, accelerator.process_index)
    return Position(**state["position"]), diffs


def check_run_shape(
    path: Path, saved: dict[str, Any], run_shape: dict[str, Any], allow_changed: set[str] = frozenset()
) -> dict[str, list[Any]]:
    """The differences between a checkpoint's run shape and this run's (key -> [checkpoint, now]); any
    outside ``allow_changed`` is an error listing all of them. Keys only one side has count too."""
    now = json.loads(json.dumps(run_shape))  # the form the checkpoint holds (tuples become lists)
    keys = sorted(set(saved) | set(now))
    diffs = {key: [saved.get(key), now.get(key)] for key in keys if saved.get(key) != now.get(key)}
    refused = {key: pair for key, pair in diffs.items() if key not in allow_changed}
    if refused:
        listed = "; ".join(f"{key}: checkpoint {a!r}, this run {b!r}" for key, (a, b) in refused.items())
        raise ValueError(
            f"{path}: this run differs from the checkpoint it would resume ({listed}); resume with the same "
            "settings, allow a deliberate change with --resume-changed FIELD, or use a new output_dir"
        )
    return diffs


def read_run_shape(path: Path) -> dict[str, Any]:
    """The run shape a (verified) checkpoint was written with."""
    return json.loads((path / STATE_FILE).read_text())["run_shape"]


def gathered_weights(accelerator: Accelerator, model: nn.Module) -> dict[str, torch.Tensor] | None:
    """What a save writes of ``model`` (as ``accelerator.prepare`` returned it), whole, on the main process
    (None elsewhere under DeepSpeed): its state dict without its frozen parameters. Every process calls it.

    The frozen parameters are the base model, which no save writes (`PreparedModel.save` keeps the
    method's own tensors and checks that every one of them is here). Leaving them out matters under FSDP
    and ZeRO-3, where each gathered tensor crosses to the main process: accelerate's ``get_state_dict``
    gathers the whole model, about 16 GB for the paper's 8B base at every checkpoint, to keep well under
    1 % of it. Under DDP the local module is whole and nothing is copied. DeepSpeed: the trainable
    weights' float32 masters (cuma/train/zero_state.py).
    """
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return gather_zero_weights(model, accelerator.is_main_process)
    if accelerator.distributed_type == DistributedType.FSDP:
        options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
        return get_model_state_dict(model, options=options)
    module = accelerator.unwrap_model(model)
    frozen = {name for name, p in module.named_parameters(remove_duplicate=False) if not p.requires_grad}
    return {name: tensor for name, tensor in module.state_dict().items() if name not in frozen}


SHARDED_OPTIMIZERS = (DistributedType.FSDP, DistributedType.DEEPSPEED)
"""Strategies whose processes each hold only a shard of the optimizer state (`_full_optimizer_state`)."""


def _optimizer_sharded(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type in SHARDED_OPTIMIZERS


def _full_optimizer_state(
    accelerator: Accelerator, model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """The whole optimizer state: this process's own, or (FSDP, ZeRO) torch's full optimizer state dict,
    keyed by parameter name and gathered from every process's shards (on the main process at least)."""
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return gather_zero_state(model, optimizer)
    if accelerator.distributed_type == DistributedType.FSDP:
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(model, optimizer, options=options)
    return optimizer.state_dict()


def _save_optimizer(directory: Path, state: dict[str, Any], keys: str) -> None:
    """Tensors to safetensors as ``<parameter>.<name>``, where a parameter is its index in the optimizer
    (``keys="index"``) or its name (``keys="name"``, a gathered state); everything else to JSON."""
    tensors, scalars = {}, {}
    for param, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{param}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{param}.{key}"] = value
    save_file(tensors, str(directory / "optimizer.safetensors"))
    meta = {"keys": keys, "param_groups": state["param_groups"], "scalars": scalars}
    (directory / "optimizer.json").write_text(json.dumps(meta))


def _load_optimizer(
    directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, strategy: DistributedType
) -> None:
    """Restore what `_save_optimizer` wrote: as it is, or sharded again over the processes (FSDP, ZeRO)."""
    sharded = strategy in SHARDED_OPTIMIZERS
    meta = json.loads((directory / "optimizer.json").read_text())
    keys = meta.get("keys", OPTIMIZER_KEYS[False])  # checkpoints from before gathering were keyed by index
    if keys != OPTIMIZER_KEYS[sharded]:
        written = "under FSDP or DeepSpeed" if keys == OPTIMIZER_KEYS[True] else "without FSDP or DeepSpeed"
        raise CheckpointError(
            f"{directory / 'optimizer.json'}: the optimizer state is keyed by parameter {keys}, written "
            f"{written}; resume under the same strategy"
        )
    state: dict[Any, dict[str, Any]] = {}
    flat = {**load_file(str(directory / "optimizer.safetensors")), **meta["scalars"]}
    for key, value in flat.items():
        param, name = key.rsplit(".", 1)
        state.setdefault(param if sharded else int(param), {})[name] = value
    full = {"state": state, "param_groups": meta["param_groups"]}
    if strategy == DistributedType.DEEPSPEED:
        load_zero_state(model, optimizer, full, str(directory / "optimizer.json"))
    elif sharded:
        set_optimizer_state_dict(model, optimizer, full, options=StateDictOptions(full_state_dict=True))
    else:
        optimizer.load_state_dict(full)


def _save_rng(directory: Path, rank: int) -> None:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = cuda_state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(keys.astype(np.int64))
    save_file(tensors, str(directory / f"rng-{rank}.safetensors"))
    meta = {"python": random.getstate(), "numpy": [kind, pos, has_gauss, cached]}
    (directory / f"rng-{rank}.json").write_text(json.dumps(meta))


def _load_rng(directory: Path, rank: int) -> None:
    path = directory / f"rng-{rank}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the checkpoint was written by fewer processes")
    tensors = load_file(str(path))
    meta = json.loads((directory / f"rng-{rank}.json").read_text())
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def verify_checkpoint(path: Path) -> None:
    """Every file the manifest lists is there with its sha256, and nothing it needs is missing."""
    manifest = path / MANIFEST_FILE
    try:
        expected = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{manifest} is missing: the checkpoint is incomplete") from None
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{manifest} is unreadable: {err}") from None
    for name, checksum in expected.items():
        target = path / name
        if not target.is_file():
            raise CheckpointError(f"{target} is missing (listed in {manifest})")
        if sha256_file(target) != checksum:
            raise CheckpointError(f"{target} does not match its sha256 in {manifest}: the file is corrupt")
    if STATE_FILE not in expected:
        raise CheckpointError(f"{manifest} does not list {STATE_FILE}")


def newest_valid_checkpoint(root: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint that passes `verify_checkpoint`, and one line per newer one that did not."""
    skipped = []
    for path in reversed(list_checkpoints(root)):
        try:
            verify_checkpoint(path)
        except CheckpointError as err:
            skipped.append(str(err))
            continue
        return path, skipped
    return None, skipped


def _write_manifest(directory: Path) -> None:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    manifest = {str(p.relative_to(directory)): sha256_file(p) for p in files}
    atomic_write_text(directory / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True))


def _fsync_tree(directory: Path) -> None:
    for path in [*directory.rglob("*"), directory]:
        fsync_path(path)


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final``; an existing ``final`` (the same step saved again) is swapped out first."""
    if final.exists():
        old = final.with_name(f"{TMP_PREFIX}old-{final.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    fsync_path(final.parent)
