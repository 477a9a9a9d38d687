"""One method and seed of a comparison: build, train if it has weights, score both splits, summarise.

The non-LLM references are fitted on the same train answers and scored on the same splits. Under a
launcher every process runs this: training is data-parallel, and scoring shares the batches out over the
processes and gathers every prediction (and routing vector) on each (`cuma.evaluation.scoring`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from cuma.compare.results import MethodRun
from cuma.config import ExperimentConfig
from cuma.data.examples import average_orders, examples_frame
from cuma.data.experiment import EVAL_SPLITS, SPLITS, ComparisonData
from cuma.evaluation.few_shot import add_shots
from cuma.evaluation.interference import GradientInterference, gradient_interference
from cuma.evaluation.scoring import score_examples
from cuma.evaluation.topology import RoutingCollector, RoutingTrace
from cuma.methods import PreparedModel, entry_config
from cuma.metrics import summarize
from cuma.processes import process_state
from cuma.reference_baselines import REFERENCE_BASELINES, BaselineConfig, fitted_settings
from cuma.train.layout import run_identity, train_dir
from cuma.train.recipe import starting_method, training_recipe
from cuma.train.trainer import TrainResult, train

logger = logging.getLogger("cuma.compare")


class Stopwatch:
    """Times named stages and logs when each starts and ends, so a long run shows where it is."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        logger.info("%s ...", name)
        start = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - start
        logger.info("%s: done in %.1f s", name, self.timings[name])


@dataclass
class MethodResult:
    """A method's run record (goes to results.json), its predictions and its routing."""

    run: MethodRun
    predictions: dict[str, pd.DataFrame]
    routing: RoutingTrace | None = None
    interference: GradientInterference | None = None


@dataclass
class MethodRunner:
    """What every method of one comparison shares: data, base model, settings and the stopwatch.

    Attributes:
        fields: profile fields the group metrics use; ``main_group`` the one for macro accuracy.
        cell_fields: the cell-majority reference's cell.
        train_root: where each trained method's checkpoints go (`train_dir`).
        resume: continue training from checkpoints found there; ``resume_changed`` names the settings
            such a resume may change on purpose.
    """

    config: ExperimentConfig
    data: ComparisonData
    base: torch.nn.Module
    tokenizer: Any
    encoder: Any
    fields: list[str]
    main_group: str
    cell_fields: list[str]
    train_root: Path
    resume: bool = False
    resume_changed: tuple[str, ...] = ()
    clock: Stopwatch = field(default_factory=Stopwatch)
    _frames: dict[str, pd.DataFrame | None] = field(default_factory=dict, init=False, repr=False)

    def run(self, name: str, seed: int) -> MethodResult:
        if name in REFERENCE_BASELINES:
            with self.clock.stage(f"{name} seed {seed}"):
                return self._reference(name, seed)
        return self._llm(name, seed)

    def _llm(self, entry: str, seed: int) -> MethodResult:
        # An entry names a method and maybe its own objective (``cuma@dpo``); each seed of ``seeds`` is the
        # training seed: adapter initialisation, data order, dropout.
        name, config = entry_config(entry, self.config)
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed))
        # Building changes the base in place (adapters, requires_grad), so every method gets a copy.
        prepared = starting_method(config, name, copy.deepcopy(self.base), self.encoder, self.train_root)
        trainable, percent = parameter_count(prepared)
        logger.info(
            "%s seed %d: %s trainable parameters (%.3f%% of base)", entry, seed, f"{trainable:,}", percent
        )
        persona = prepared.persona_in_prompt
        train_seconds = 0.0
        training: dict[str, Any] = {}
        if prepared.trainable:
            stage = f"{entry} seed {seed}: train"
            with self.clock.stage(stage):
                recipe = training_recipe(config, self.data, self.tokenizer, prepared, process_state().device)
                result = train(
                    prepared,
                    recipe.dataset,
                    recipe.collate_fn,
                    config.objective_train,
                    train_dir(self.train_root, name, seed, config.train.objective),
                    objective=recipe.objective,
                    resume=self.resume,
                    run_identity=run_identity(config, name, self.data.examples("train", persona)),
                    allow_changed=self.resume_changed,
                )
            train_seconds = self.clock.timings[stage]
            training = training_record(config, prepared, result)
        # Training (accelerate) already runs on this process's device; scoring follows it.
        prepared.to(process_state().device)
        interference = None
        if prepared.spec.kind == "adapter" and config.eval.interference_examples and seed == config.seeds[0]:
            stage = f"{entry} seed {seed}: gradient interference"
            with self.clock.stage(stage):
                interference = gradient_interference(
                    prepared,
                    self.tokenizer,
                    self.data.examples("train", persona),
                    self.main_group,
                    per_group=config.eval.interference_examples,
                    max_length=config.data.max_length,
                    seed=config.data.seed,
                )
            training["interference"] = interference.to_dict()
            logger.info(
                "%s: mean gradient cosine between %s groups %.3f",
                entry,
                self.main_group,
                interference.mean_cosine,
            )
        predictions, metrics, collectors = {}, {}, {}
        stage = f"{entry} seed {seed}: score"
        with self.clock.stage(stage):
            for split in EVAL_SPLITS:
                # One list per option order the split is scored in (two under data.option_order=both,
                # averaged); routing is traced on the first order only.
                orders = self.data.score_orders(split, persona)
                if not orders[0]:
                    continue
                if prepared.spec.few_shot:
                    pool = self.data.examples("train", persona)
                    orders = [
                        add_shots(rows, pool, config.eval.few_shot, self.main_group, seed=config.data.seed)
                        for rows in orders
                    ]
                if prepared.has_routing:
                    collectors[split] = RoutingCollector(config.eval.routing_tokens)
                frames = [
                    score_examples(
                        prepared,
                        self.tokenizer,
                        rows,
                        use_embeddings=prepared.uses_demographics,
                        max_length=config.data.max_length,
                        batch_size=config.eval.batch_size,
                        padding_side=config.eval.padding_side,
                        precision=config.eval.precision,
                        routing=collectors.get(split) if k == 0 else None,
                        split=True,  # every process of a launched run scores a share, all get all
                        desc=f"{entry} seed {seed} {split}" + (f" order {k + 1}" if len(orders) > 1 else ""),
                    )
                    for k, rows in enumerate(orders)
                ]
                predictions[split] = frames[0] if len(frames) == 1 else average_orders(frames)
                metrics[split] = summarize(predictions[split], self.fields, self.main_group)
                logger.info("%s seed %d %s: accuracy %.3f", entry, seed, split, metrics[split]["accuracy"])
        adapter = prepared.spec.kind == "adapter"
        run = MethodRun(
            method=entry,
            seed=seed,
            kind=prepared.spec.kind,
            adapter_config=prepared.settings if adapter else None,  # preset with adapter_overrides applied
            settings={} if adapter else prepared.settings,
            persona_in_prompt=persona,
            uses_demographics=prepared.uses_demographics,
            trainable_params=trainable,
            trainable_pct=percent,
            train_seconds=train_seconds,
            eval_seconds=self.clock.timings[stage],
            metrics=metrics,
            training=training,
            gradient_cosine=None if interference is None else interference.mean_cosine,
        )
        routing = (
            RoutingTrace.from_collectors(collectors, predictions, self.fields, SPLITS) if collectors else None
        )
        return MethodResult(run, predictions, routing, interference)

    def _reference(self, name: str, seed: int) -> MethodResult:
        start = time.perf_counter()
        features = self.cell_fields if name == "cell-majority" else self.fields
        settings = BaselineConfig(seed=seed)
        fit = {"valid": self._frame("valid"), "pool": self._frame("pool")}
        predictions, metrics = {}, {}
        for split in EVAL_SPLITS:
            if self.data.splits[split]:
                predictions[split] = REFERENCE_BASELINES[name](
                    self._frame("train"), self._frame(split), features, settings, **fit
                )
                metrics[split] = summarize(predictions[split], self.fields, self.main_group)
        run = MethodRun(
            method=name,
            seed=seed,
            kind="reference",
            adapter_config=None,
            settings={
                **dataclasses.asdict(settings),
                "fields": features,
                **fitted_settings(next(iter(predictions.values()))),
            },
            persona_in_prompt=None,
            uses_demographics=None,
            trainable_params=None,
            trainable_pct=None,
            train_seconds=None,
            eval_seconds=time.perf_counter() - start,
            metrics=metrics,
        )
        return MethodResult(run, predictions)

    def _frame(self, name: str) -> pd.DataFrame | None:
        """The answer frame of a split, the training pool (``pool``) or the validation answers (``valid``),
        built once per comparison; None when there are none."""
        if name not in self._frames:
            rows = getattr(self.data, name) if name in ("pool", "valid") else self.data.splits[name]
            self._frames[name] = examples_frame(rows) if rows else None
        return self._frames[name]


def training_record(config: ExperimentConfig, prepared: PreparedModel, result: TrainResult) -> dict[str, Any]:
    """What a trained run of a comparison did, for its results record (`MethodRun.training`)."""
    return {
        "objective": config.train.objective,
        "lr": config.objective_train.lr,
        "started_from": prepared.started_from,
        "steps": result.global_step,
        "final_loss": result.final_loss,
        "model_dir": str(result.model_dir),
        "changed_on_resume": result.changed_on_resume,
        "skipped_checkpoints": result.skipped_checkpoints,
    }


def parameter_count(prepared: PreparedModel) -> tuple[int, float]:
    """Trainable parameters and their percentage of the base model, for any method kind."""
    report = prepared.parameter_report()
    return report.trainable, report.percent()
