"""The training loop shared by every trainable method and objective (SFT, DPO, GRPO), on ``accelerate``.

Public API::

    train(prepared, dataset, collate_fn, config, output_dir, *, objective=None, resume=False,
          run_identity=None, allow_changed=(), on_step=None) -> TrainResult

``dataset`` is any sized sequence of examples and ``collate_fn`` turns a list of them into the batch the
objective reads (`cuma.train.objectives`; for SFT ``input_ids``, ``attention_mask``, ``labels`` with -100
outside the answer and, for methods that route on the profile, ``demographic_embeds`` [batch,
encoder_dim]); ``respondent_id`` / ``question_id`` lists are optional and only used to name a batch in
errors.

How it trains (docs/design.md, "Training", says where this differs from the authors' trainer):

* Gradient accumulation is done here, not by ``Accelerator(gradient_accumulation_steps=...)``: the
  micro-batches of one optimizer step are fetched first, so the loss is the exact mean over every unit
  of the step (answer token, pair, ...; on every process), whatever their split over micro-batches.
* The schedule is built from the real number of optimizer steps (``plan_steps``), after the loader is
  prepared, so it is right for any process count, accumulation and number of epochs.
* The scheduler is stepped here only after an optimizer step, and is not passed to
  ``accelerator.prepare`` (which would step it once per process).
* A checkpoint stores the data position, optimizer, scheduler and RNG states; a resumed run replays the
  same batches with the same dropout masks and ends with bit-identical weights. The model and optimizer
  states are gathered from every process (shards under FSDP or ZeRO-3) and written by the main process
  (`cuma.train.checkpoint`).
* Under DeepSpeed its engine clips and steps inside the backward of a step's last micro-batch; the loop
  marks that micro-batch, the DeepSpeed config must agree with ``train`` (`cuma.train.zero_state`), the
  float32 masters start from the exact weights, and ZeRO-3 weights are gathered while GRPO generates.
* Existing checkpoints are never deleted at start: without ``resume`` they are an error. A resume checks
  what it resumes: every train setting, the run's shape and the caller's ``run_identity`` (data sample,
  model, encoder, ...) must equal the checkpoint's, or the run stops listing each difference; settings
  named in ``allow_changed`` may differ and are recorded. A corrupt or incomplete newest checkpoint is
  reported by path and the previous one is used.
* The output directory is locked for the run (`cuma.lock.group_lock`): a second run into it is refused.
* A non-finite loss, or a finite loss with a non-finite gradient norm, stops the run and names the step
  and the micro-batches (respondent and question ids when the collator passes them).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, set_seed
from tqdm.auto import tqdm

from cuma.config import TrainConfig
from cuma.lock import group_lock
from cuma.methods import PreparedModel
from cuma.precision import resolve_precision
from cuma.processes import cpu_only
from cuma.train.checkpoint import (
    MODEL_DIR,
    CheckpointError,
    Position,
    list_checkpoints,
    load_checkpoint,
    newest_valid_checkpoint,
    save_checkpoint,
)
from cuma.train.data import make_loader
from cuma.train.layout import train_settings
from cuma.train.monitor import hparams, postfix, routing_stats, trackers
from cuma.train.objectives import SFT, Objective
from cuma.train.optim import StepPlan, build_optimizer, build_scheduler, plan_steps
from cuma.train.zero_state import (
    configure_zero,
    gathered_for_generation,
    set_zero_masters,
    trainable_weights,
)

MIXED_PRECISION = {"bf16": "bf16", "fp32": "no"}  # train.precision -> accelerate mixed_precision
CHECKPOINT_DIR = "checkpoints"

logger = logging.getLogger("cuma.train")

OnStep = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    """What a finished run leaves: the last checkpoint and per-step logs.

    ``skipped_checkpoints`` names the corrupt or incomplete checkpoints a resume passed over, and
    ``changed_on_resume`` the settings a resume was allowed to change (setting -> [checkpoint, now]).
    """

    output_dir: Path
    checkpoint: Path
    global_step: int
    plan: StepPlan
    history: list[dict[str, float]] = field(default_factory=list)
    skipped_checkpoints: list[str] = field(default_factory=list)
    changed_on_resume: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def model_dir(self) -> Path:
        """The trained model's folder; `cuma.methods.load_trained` reads it."""
        return self.checkpoint / MODEL_DIR

    @property
    def final_loss(self) -> float:
        return self.history[-1]["loss"] if self.history else float("nan")


def train(
    prepared: PreparedModel,
    dataset: Sequence[Any],
    collate_fn: Callable[[list[Any]], dict[str, Any]],
    config: TrainConfig,
    output_dir: str | Path,
    *,
    objective: Objective | None = None,
    resume: bool = False,
    run_identity: dict[str, Any] | None = None,
    allow_changed: Iterable[str] = (),
    on_step: OnStep | None = None,
) -> TrainResult:
    """Train ``prepared`` on ``dataset``; checkpoints go to ``output_dir/checkpoints``.

    ``objective`` is what is optimised (`cuma.train.objectives`; default SFT), and ``collate_fn`` must
    make the batches it reads. ``resume`` continues from the newest valid checkpoint there (or starts
    fresh when there is none).
    ``run_identity`` is everything else that determines the result (JSON values); a resume refuses a
    checkpoint whose identity differs, except in the ``allow_changed`` keys (``train.lr``, ``data.seed``...).
    ``on_step(global_step, logs)`` runs after each optimizer step and its checkpoint, if any.
    """
    if not prepared.trainable:
        raise ValueError(f"method {prepared.name!r} has nothing to train")
    output_dir = Path(output_dir)
    with group_lock(output_dir):
        return _train(
            prepared,
            dataset,
            collate_fn,
            config,
            output_dir,
            objective or SFT(),
            resume,
            run_identity or {},
            allow_changed,
            on_step,
        )


def _train(
    prepared: PreparedModel,
    dataset: Sequence[Any],
    collate_fn: Callable[[list[Any]], dict[str, Any]],
    config: TrainConfig,
    output_dir: Path,
    objective: Objective,
    resume: bool,
    run_identity: dict[str, Any],
    allow_changed: Iterable[str],
    on_step: OnStep | None,
) -> TrainResult:
    root = output_dir / CHECKPOINT_DIR
    existing = list_checkpoints(root)
    if existing and not resume:
        raise FileExistsError(
            f"{root} already holds checkpoints (newest {existing[-1].name}); resume or use a new output_dir"
        )
    start, skipped = newest_valid_checkpoint(root) if resume else (None, [])
    for problem in skipped:
        logger.warning("%s; resuming from an earlier checkpoint", problem)
    if existing and start is None:
        raise CheckpointError(f"no valid checkpoint to resume in {root}: " + "; ".join(skipped))
    mixed_precision = MIXED_PRECISION[resolve_precision(config.precision, "train").name]
    state = AcceleratorState._shared_state
    if state and state.get("_mixed_precision", mixed_precision) != mixed_precision:
        # accelerate keeps one precision per process and refuses another; a process that trains twice at
        # different precisions (a notebook, a test session) starts its state again. The process group
        # lives in PartialState, which is kept. (accelerate's own reset; it has no public one.)
        AcceleratorState._reset_state()
    accelerator = Accelerator(
        cpu=cpu_only(),
        mixed_precision=mixed_precision,
        log_with=trackers(config) or None,
        project_dir=str(output_dir),
    )
    set_seed(config.seed)
    zero = accelerator.distributed_type == DistributedType.DEEPSPEED
    if zero:
        configure_zero(accelerator.state.deepspeed_plugin, config)
    if start is not None:
        # The checkpoint's full weights go into the whole model before accelerate prepares it, so DDP
        # replicates them, FSDP shards them and ZeRO-3 partitions them, each exactly.
        prepared.load_weights(start / MODEL_DIR)
    if config.gradient_checkpointing:
        prepared.enable_gradient_checkpointing()  # before accelerate wraps the model, as transformers asks
    initial = trainable_weights(prepared) if zero else None
    loader, sampler = make_loader(dataset, collate_fn, config.batch_size, config.seed)
    optimizer = build_optimizer(prepared.parameter_groups(), config)
    model, optimizer, loader = accelerator.prepare(prepared, optimizer, loader)
    if initial is not None:
        set_zero_masters(model, initial)
    plan = plan_steps(len(loader), config)
    scheduler = build_scheduler(optimizer, config, plan)
    run_shape = {
        "num_examples": len(dataset),
        "num_processes": accelerator.num_processes,
        "total_steps": plan.total_steps,
        **train_settings(config),
        **run_identity,
    }
    position = Position(global_step=0, epoch=0, batch_in_epoch=0)
    changed: dict[str, list[Any]] = {}
    if start is not None:
        position, changed = load_checkpoint(
            accelerator, start, model, optimizer, scheduler, run_shape, set(allow_changed)
        )
        for key, (before, now) in changed.items():
            logger.warning("resuming with %s changed from %r to %r (allowed)", key, before, now)
    if trackers(config):
        accelerator.init_trackers("logs", config=hparams(config, prepared.name))

    loop = _Loop(
        accelerator, prepared, model, objective, optimizer, scheduler, config, plan, root, run_shape, on_step
    )
    try:
        last = loop.run(loader, sampler, position) or start  # None: resumed a finished run
    finally:
        accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # undo the autocast patch on forward
        prepared.eval()
        # Close only this run's trackers: `end_training` would also tear down the process group that the
        # next method of a multi-process `cuma compare` still needs.
        for tracker in accelerator.trackers:
            tracker.finish()
    return TrainResult(output_dir, last, loop.global_step, plan, loop.history, skipped, changed)


class _Loop:
    """The epoch/step loop; state lives here so ``train`` reads as a recipe."""

    def __init__(
        self,
        accelerator: Accelerator,
        prepared: PreparedModel,
        model: torch.nn.Module,
        objective: Objective,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        config: TrainConfig,
        plan: StepPlan,
        root: Path,
        run_shape: dict[str, Any],
        on_step: OnStep | None,
    ) -> None:
        self.accelerator = accelerator
        self.prepared = prepared
        self.model = model
        self.objective = objective
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.config = config
        self.plan = plan
        self.root = root
        self.run_shape = run_shape
        self.on_step = on_step
        self.global_step = 0
        self.history: list[dict[str, float]] = []

    def run(self, loader: Iterable[dict[str, Any]], sampler: Any, start: Position) -> Path | None:
        """Train from ``start`` to the last step; returns the final checkpoint (None if no step was left)."""
        acc, plan = self.accelerator, self.plan
        self.global_step = start.global_step
        epoch, skip = start.epoch, start.batch_in_epoch
        if skip >= plan.micro_batches_per_epoch:
            epoch, skip = epoch + 1, 0
        bar = tqdm(
            total=plan.total_steps,
            initial=self.global_step,
            desc=f"train {self.prepared.name}",
            disable=not acc.is_local_main_process,
        )
        last_saved: Path | None = None
        self.model.train()
        while self.global_step < plan.total_steps:
            batches = acc.skip_first_batches(loader, skip) if skip else loader
            # accelerate keeps its own epoch counter per loader (a skipping loader starts at 0): set both.
            batches.set_epoch(epoch)
            sampler.set_epoch(epoch)
            consumed = skip
            for micro in _chunks(batches, self.config.grad_accum):
                logs = self._step(micro, first_index=consumed)
                consumed += len(micro)
                self.global_step += 1
                logs["epoch"] = epoch + consumed / plan.micro_batches_per_epoch
                self.history.append(logs)
                bar.update(1)
                bar.set_postfix(postfix(logs), refresh=False)
                due = self.global_step % self.config.log_every == 0 or self.global_step == plan.total_steps
                if due or any(key.startswith("routing/") for key in logs):  # routing is sparse: never drop it
                    acc.log(logs, step=self.global_step)
                position = Position(self.global_step, epoch, consumed)
                every = self.config.save_every
                if (every and self.global_step % every == 0) or self.global_step == plan.total_steps:
                    last_saved = self._save(position)
                if self.on_step is not None:
                    self.on_step(self.global_step, logs)
                if self.global_step == plan.total_steps:
                    break
            epoch, skip = epoch + 1, 0
        bar.close()
        return last_saved

    def _save(self, position: Position) -> Path:
        return save_checkpoint(
            self.accelerator,
            self.root,
            self.prepared,
            self.model,
            self.optimizer,
            self.scheduler,
            position,
            self.run_shape,
            self.config.keep_checkpoints,
        )

    def _step(self, micro: list[dict[str, Any]], first_index: int) -> dict[str, float]:
        """One optimizer step over ``micro``: the objective's loss is the mean over all its units (answer
        tokens, pairs, ...) of the step on every process, plus the router losses."""
        acc, step, objective = self.accelerator, self.global_step + 1, self.objective
        started = time.perf_counter()
        with gathered_for_generation(acc, self.model) if objective.generates else contextlib.nullcontext():
            micro = [objective.rollout(self.prepared, batch) for batch in micro]
        local = torch.stack(
            [
                sum(objective.units(b) for b in micro).float(),
                sum(v.sum() for b in micro for k, v in b.items() if k.endswith("attention_mask")).float(),
            ]
        )
        units, tokens = acc.reduce(local.to(acc.device), reduction="sum").tolist()
        if units == 0:
            raise ValueError(f"step {step}: no {objective.unit_name} in {_describe(micro[0])}")
        record = self.prepared.has_routing and step % self.config.routing_stats_every == 0
        routing: dict[str, float] = {}
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, torch.Tensor] = {}
        aux_total = torch.zeros((), device=acc.device)
        finite: list[torch.Tensor] = []
        for i, batch in enumerate(micro):
            last = i == len(micro) - 1
            acc.sync_gradients = last  # DeepSpeed reduces the gradients and steps inside the last backward
            with contextlib.ExitStack() as stack:
                if not last:
                    stack.enter_context(acc.no_sync(self.model))
                rec = stack.enter_context(self.prepared.record_routing()) if record and i == 0 else None
                part = objective.loss(self.model, self.prepared, batch)
                loss = part.value * (acc.num_processes / units) + part.aux_loss / len(micro)
                acc.backward(loss)
            if rec is not None:
                routing = routing_stats(rec.weights, part.attention_mask)
            finite.append(torch.isfinite(loss.detach()))
            aux_total += part.aux_loss.detach()
            for target, values in ((sums, part.sums), (counts, part.counts)):
                for key, value in values.items():
                    target[key] = target.get(key, 0) + value.detach().float().to(acc.device)
        names = sorted(sums), sorted(counts)
        local = torch.stack([aux_total, (~torch.stack(finite)).sum().float(), *(sums[k] for k in names[0])])
        local = torch.cat([local, torch.stack([counts[k] for k in names[1]])]) if names[1] else local
        aux_sum, bad, *totals = acc.reduce(local, "sum").tolist()
        if bad:
            raise FloatingPointError(self._nan_message(step, micro, finite, first_index))
        logs = {key: value / units for key, value in zip(names[0], totals, strict=False)}
        logs.update(zip(names[1], totals[len(names[0]) :], strict=True))
        logs["aux_loss"] = aux_sum / (len(micro) * acc.num_processes)
        # The norm is of the synchronised gradients: every process sees the same value and stops together.
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        logs["grad_norm"] = float(acc.clip_grad_norm_(self.model.parameters(), max_norm))
        if not math.isfinite(logs["grad_norm"]):
            raise FloatingPointError(self._grad_message(step, micro, first_index, logs["grad_norm"]))
        logs["lr"] = self.optimizer.param_groups[0]["lr"]
        for group in self.optimizer.param_groups:
            logs[f"lr/{group['name']}"] = group["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        logs["tokens_per_s"] = tokens / max(time.perf_counter() - started, 1e-9)
        logs.update(routing)
        return logs

    def _nan_message(
        self, step: int, micro: list[dict[str, Any]], finite: list[torch.Tensor], first_index: int
    ) -> str:
        bad = [i for i, ok in enumerate(finite) if not ok]
        if not bad:
            return f"non-finite loss at step {step} on another process than {self.accelerator.process_index}"
        i = bad[0]
        return (
            f"non-finite loss at step {step}, micro-batch {first_index + i} of the epoch "
            f"(process {self.accelerator.process_index}): {_describe(micro[i])}"
        )

    def _grad_message(self, step: int, micro: list[dict[str, Any]], first_index: int, norm: float) -> str:
        """Which micro-batches of this process fed a step whose loss was finite but gradient was not."""
        acc, last = self.accelerator, first_index + len(micro) - 1
        batches = "; ".join(f"[{first_index + i}] {_describe(batch)}" for i, batch in enumerate(micro))
        return (
            f"non-finite gradient norm ({norm}) with a finite loss at step {step}, micro-batches "
            f"{first_index}-{last} of the epoch (process {acc.process_index}, gradients summed over "
            f"{acc.num_processes} process(es)): {batches}"
        )


def _describe(batch: dict[str, Any]) -> str:
    """Name a batch by its respondent and question ids when the collator provides them."""
    parts = [f"{key}={list(batch[key])[:8]}" for key in ("respondent_id", "question_id") if key in batch]
    return ", ".join(parts) if parts else f"batch of {len(batch['input_ids'])} rows (no ids in the batch)"


def _chunks(batches: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for batch in batches:
        chunk.append(batch)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
