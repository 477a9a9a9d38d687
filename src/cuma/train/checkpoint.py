"""Atomic training checkpoints: weights, optimizer, scheduler, RNG states and data position.

Layout of ``<output_dir>/checkpoints/step-00000012/``::

    trainable.safetensors, method.json    # PreparedModel.save: the weights and what they belong to
    optimizer.safetensors, optimizer.json # AdamW moments (tensors) and param groups (hyperparameters)
    rng-<rank>.safetensors, rng-<rank>.json  # torch/CUDA, numpy and python RNG states, per process
    trainer_state.json                    # data position, scheduler state, the run's shape

A checkpoint is written into ``.tmp-step-...`` in the same directory, fsynced, then renamed into place,
so a failed save (a full disk) leaves the previous checkpoint as it was. Nothing is pickled: tensors go
to safetensors, everything else to JSON. With several processes, each phase of a save ends with the
processes agreeing on its outcome, so a failure on one process raises on all instead of leaving the
others waiting at a barrier.
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
from safetensors.torch import load_file, save_file

from cuma.methods import PreparedModel, check_identity

STATE_FILE = "trainer_state.json"
PREFIX = "step-"
TMP_PREFIX = ".tmp-"


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
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    position: Position,
    run_shape: dict[str, Any],
    keep: int | None,
) -> Path:
    """Write a checkpoint atomically and prune all but the ``keep`` newest; returns its path."""
    name = f"{PREFIX}{position.global_step:08d}"
    final, tmp = root / name, root / f"{TMP_PREFIX}{name}"
    main = accelerator.is_main_process
    if main:
        shutil.rmtree(tmp, ignore_errors=True)  # debris of an earlier failed save
    accelerator.wait_for_everyone()

    def write() -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        _save_rng(tmp, accelerator.process_index)
        if main:
            prepared.save(tmp)
            _save_optimizer(tmp, optimizer)
            state = {
                "position": asdict(position),
                "scheduler": scheduler.state_dict(),
                "run_shape": run_shape,
            }
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))

    def commit() -> None:
        if main:
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
    prepared: PreparedModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    run_shape: dict[str, Any],
) -> Position:
    """Restore everything ``save_checkpoint`` wrote, after checking it belongs to this run."""
    check_identity(path, prepared.identity())
    state = json.loads((path / STATE_FILE).read_text())
    for key, value in run_shape.items():
        if state["run_shape"].get(key) != value:
            raise ValueError(
                f"{path / STATE_FILE}: checkpoint was written with {key}={state['run_shape'].get(key)!r}, "
                f"this run has {key}={value!r}; resume with the same data and train settings"
            )
    prepared.load_weights(path)
    _load_optimizer(path, optimizer)
    scheduler.load_state_dict(state["scheduler"])
    _load_rng(path, accelerator.process_index)
    return Position(**state["position"])


def _save_optimizer(directory: Path, optimizer: torch.optim.Optimizer) -> None:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{key}"] = value
    save_file(tensors, str(directory / "optimizer.safetensors"))
    meta = {"param_groups": state["param_groups"], "scalars": scalars}
    (directory / "optimizer.json").write_text(json.dumps(meta))


def _load_optimizer(directory: Path, optimizer: torch.optim.Optimizer) -> None:
    meta = json.loads((directory / "optimizer.json").read_text())
    state: dict[int, dict[str, Any]] = {}
    flat = {**load_file(str(directory / "optimizer.safetensors")), **meta["scalars"]}
    for key, value in flat.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


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


def _fsync_tree(directory: Path) -> None:
    for path in directory.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    _fsync_dir(final.parent)
