"""The comparison driver: train and score every method on one survey, then write the report directory.

Per training seed (``seeds``) and method: build the method on a fresh copy of the base model, train it
if it has weights to train, score the random test split and the held-out profile cells, and summarise
the predictions with every survey metric. The non-LLM references (population majority, cell majority,
logistic regression) always run on the same splits, listed or not, because they are what the LLM
methods must beat. The splits depend on ``data.seed`` only; each entry of ``seeds`` becomes
``train.seed`` (adapter initialisation, data order, dropout).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cuma.compare.data import SPLITS, ComparisonData, prepare_data
from cuma.compare.figures import RoutingTrace, make_figures
from cuma.compare.quick import RANDOM_ENCODER, RandomProfileEncoder
from cuma.compare.report import write_report
from cuma.config import ExperimentConfig, ModelConfig
from cuma.data.collate import SFTCollator
from cuma.data.examples import examples_frame
from cuma.data.render import render_prompt
from cuma.evaluation.few_shot import add_shots
from cuma.evaluation.scoring import score_examples
from cuma.evaluation.topology import RoutingCollector
from cuma.methods import PreparedModel, build_method, check_methods, get_method
from cuma.metrics import summarize
from cuma.models import load_base_model
from cuma.reference_baselines import BaselineConfig, cell_majority, logistic_regression, population_majority
from cuma.train.checkpoint import list_checkpoints
from cuma.train.trainer import CHECKPOINT_DIR, train

logger = logging.getLogger("cuma.compare")

REFERENCES: dict[str, Callable[..., pd.DataFrame]] = {
    "majority": population_majority,
    "cell-majority": cell_majority,
    "logistic": logistic_regression,
}
"""Registry name -> reference baseline ``(train, test, fields, config) -> predictions``."""

PACKAGES = ("torch", "transformers", "peft", "accelerate", "numpy", "pandas", "scikit-learn", "scipy")
EVAL_SPLITS = ("test", "heldout")


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


def run_comparison(config: ExperimentConfig, quick: bool = False, resume: bool = False) -> Path:
    """Run the comparison ``config`` describes and return its report directory (``config.output_dir``).

    ``quick`` marks a config made by `quick_config`: the report says so, and training checkpoints go to a
    temporary directory that is deleted afterwards. Otherwise they stay in ``<output_dir>/train``, and
    ``resume`` continues from them; without it, leftover checkpoints are an error before any work, so a
    changed config never silently reuses old weights.
    """
    methods = list(dict.fromkeys([*config.methods, *REFERENCES]))
    check_methods(methods, config)
    out = Path(config.output_dir)
    with contextlib.ExitStack() as stack:
        if quick:
            train_root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cuma-quick-train-")))
        else:
            train_root = out / "train"
            _check_fresh(train_root, config, methods, resume)
        return _compare(config, methods, out, train_root, quick, resume)


def _compare(
    config: ExperimentConfig, methods: list[str], out: Path, train_root: Path, quick: bool, resume: bool
) -> Path:
    clock = Stopwatch()
    started = time.perf_counter()
    logger.info("comparison of %s on %s -> %s", ", ".join(methods), config.data.dataset, out)

    with clock.stage("load and split data"):
        data = prepare_data(config.data)
    fields = config.eval.group_fields or data.survey.profile_fields
    main_group = config.eval.main_group or fields[0]
    _check_fields(config, fields, main_group, data.survey.profile_fields)
    with clock.stage(f"load base model {config.model.name}"):
        base, tokenizer = load_base_model(config.model.name, dtype=config.model.dtype)
    with clock.stage(f"encode profiles ({config.model.encoder})"):
        encoder = make_encoder(config.model)
        data = data.with_embeddings(encoder)
    lengths = _prompt_lengths(tokenizer, data)

    runs: list[dict[str, Any]] = []
    predictions: dict[str, dict[str, pd.DataFrame]] = {}
    routing: dict[str, RoutingTrace] = {}
    for seed in config.seeds:
        seeded = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed))
        for name in methods:
            if name in REFERENCES:
                with clock.stage(f"{name} seed {seed}"):
                    cells = config.eval.cell_fields or fields
                    run, preds = _run_reference(name, seed, data, fields, main_group, cells)
            else:
                run, preds, trace = _run_llm(
                    name,
                    seeded,
                    base,
                    tokenizer,
                    data,
                    encoder.dim,
                    fields,
                    main_group,
                    clock,
                    train_root,
                    resume,
                )
                if trace is not None and seed == config.seeds[0]:
                    routing[name] = trace
            runs.append(run)
            _save_predictions(out, name, seed, preds)
            if seed == config.seeds[0]:
                predictions[name] = preds

    with clock.stage("figures and report"):
        figures, topology = make_figures(out, predictions, routing, main_group, config.seeds[0])
        clock.timings["total"] = time.perf_counter() - started
        results = {
            "title": f"CuMA comparison on {config.data.dataset}" + (" (quick)" if quick else ""),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "quick": quick,
            "config": config.to_dict(),
            "versions": versions(),
            "machine": machine(),
            "data": _data_summary(config, data, fields, main_group, lengths),
            "timings": clock.timings,
            "runs": runs,
            "topology": topology,
            "figures": figures,
        }
        write_report(results, out)
    logger.info("report written to %s (total %.1f s)", out / "report.md", time.perf_counter() - started)
    return out


def make_encoder(config: ModelConfig) -> Any:
    """The demographic encoder ``model.encoder`` names (``tiny-random`` is the quick run's stand-in)."""
    if config.encoder == RANDOM_ENCODER:
        return RandomProfileEncoder()
    from cuma.encoder import DemographicEncoder

    return DemographicEncoder(config.encoder, pooling=config.encoder_pooling)


def _run_llm(
    name: str,
    config: ExperimentConfig,
    base: torch.nn.Module,
    tokenizer: Any,
    data: ComparisonData,
    encoder_dim: int,
    fields: list[str],
    main_group: str,
    clock: Stopwatch,
    train_root: Path,
    resume: bool,
) -> tuple[dict[str, Any], dict[str, pd.DataFrame], RoutingTrace | None]:
    seed = config.train.seed
    # build_method changes the base in place (adapters, requires_grad), so every method gets a copy.
    prepared = build_method(name, copy.deepcopy(base), config, encoder_dim=encoder_dim)
    trainable, percent = parameter_count(prepared)
    logger.info("%s seed %d: %s trainable parameters (%.3f%% of base)", name, seed, f"{trainable:,}", percent)
    persona = prepared.persona_in_prompt
    train_seconds = 0.0
    if prepared.trainable:
        with clock.stage(f"{name} seed {seed}: train"):
            collate = SFTCollator(tokenizer, max_length=config.data.max_length)
            train(
                prepared,
                data.examples("train", persona),
                collate,
                config.train,
                train_root / f"{name}-seed{seed}",
                resume=resume,
            )
        train_seconds = clock.timings[f"{name} seed {seed}: train"]
    preds, metrics, collectors = {}, {}, {}
    with clock.stage(f"{name} seed {seed}: score"):
        for split in EVAL_SPLITS:
            examples = data.examples(split, persona)
            if not examples:
                continue
            if prepared.spec.few_shot:
                pool = data.examples("train", persona)
                examples = add_shots(examples, pool, config.eval.few_shot, main_group, seed=config.data.seed)
            collectors[split] = RoutingCollector(config.eval.routing_tokens) if prepared.has_routing else None
            preds[split] = score_examples(
                prepared.model,
                tokenizer,
                examples,
                use_embeddings=prepared.uses_demographics,
                max_length=config.data.max_length,
                batch_size=config.eval.batch_size,
                padding_side=config.eval.padding_side,
                precision=config.eval.precision,
                routing=collectors[split],
                desc=f"{name} seed {seed} {split}",
            )
            metrics[split] = summarize(preds[split], fields, main_group)
            logger.info("%s seed %d %s: accuracy %.3f", name, seed, split, metrics[split]["accuracy"])
    trace = None
    if prepared.has_routing:
        trace = RoutingTrace.from_collectors(collectors, preds, fields)
    run = {
        "method": name,
        "seed": seed,
        "kind": prepared.spec.kind,
        "persona_in_prompt": persona,
        "uses_demographics": prepared.uses_demographics,
        "trainable_params": trainable,
        "trainable_pct": percent,
        "train_seconds": train_seconds,
        "eval_seconds": clock.timings[f"{name} seed {seed}: score"],
        "metrics": metrics,
    }
    return run, preds, trace


def _run_reference(
    name: str, seed: int, data: ComparisonData, fields: list[str], main_group: str, cell_fields: list[str]
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """Fit a reference on the train answers; ``cell_fields`` define cell-majority's cells, the others
    use every group field."""
    start = time.perf_counter()
    train_frame = examples_frame(data.splits["train"])
    preds, metrics = {}, {}
    for split in EVAL_SPLITS:
        if data.splits[split]:
            features = cell_fields if name == "cell-majority" else fields
            preds[split] = REFERENCES[name](
                train_frame, examples_frame(data.splits[split]), features, BaselineConfig(seed=seed)
            )
            metrics[split] = summarize(preds[split], fields, main_group)
    run = {
        "method": name,
        "seed": seed,
        "kind": "reference",
        "trainable_params": None,
        "trainable_pct": None,
        "train_seconds": None,
        "eval_seconds": time.perf_counter() - start,
        "metrics": metrics,
    }
    return run, preds


def parameter_count(prepared: PreparedModel) -> tuple[int, float]:
    """Trainable parameters and their percentage of the base model, for any method kind."""
    report = prepared.parameter_report()
    if isinstance(report, dict):
        return int(report["trainable"]), float(report["percent_of_base"])
    return int(report.trainable), float(report.percent())


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("cuma", *PACKAGES):
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
    }
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return info


def _data_summary(
    config: ExperimentConfig, data: ComparisonData, fields: list[str], main_group: str, lengths: list[int]
) -> dict[str, Any]:
    survey = data.survey
    return {
        "dataset": config.data.dataset,
        "survey_answers": len(survey.answers),
        "survey_respondents": len(survey.respondents),
        "n_questions": len(survey.questions),
        "sizes": data.sizes(),
        "respondents": data.respondents,
        "heldout_cells": data.cells,
        "group_fields": fields,
        "main_group": main_group,
        "max_length": config.data.max_length,
        "longest_prompt": max(lengths),
        "mean_prompt": float(np.mean(lengths)),
    }


def _prompt_lengths(tokenizer: Any, data: ComparisonData) -> list[int]:
    """Token counts of the persona prompts (the longer variant) of every sampled example."""
    return [
        len(render_prompt(tokenizer, ex.prompt_messages)) for split in SPLITS for ex in data.splits[split]
    ]


def _check_fields(config: ExperimentConfig, fields: list[str], main_group: str, known: list[str]) -> None:
    chosen = {
        "group_fields": fields,
        "main_group": [main_group],
        "cell_fields": config.eval.cell_fields or [],
    }
    for name, values in chosen.items():
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"eval.{name} names unknown profile fields {unknown}; known: {known}")


def _check_fresh(train_root: Path, config: ExperimentConfig, methods: list[str], resume: bool) -> None:
    """Refuse, before any work, to train over checkpoints an earlier run left unless resuming."""
    if resume:
        return
    for name in methods:
        if get_method(name).trainable:
            for seed in config.seeds:
                found = list_checkpoints(train_root / f"{name}-seed{seed}" / CHECKPOINT_DIR)
                if found:
                    raise FileExistsError(
                        f"{found[-1]} is left from an earlier run; pass --resume to continue it "
                        "or choose another output_dir"
                    )


def _save_predictions(out: Path, name: str, seed: int, preds: dict[str, pd.DataFrame]) -> None:
    folder = out / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    for split, frame in preds.items():
        frame.to_parquet(folder / f"{name}-seed{seed}-{split}.parquet", index=False)
