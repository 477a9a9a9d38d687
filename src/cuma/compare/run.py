"""The comparison driver: train and score every method on one survey, then write the report directory.

Per training seed (``seeds``) and method: build the method on a fresh copy of the base model, train it
if it has weights to train, score the random test split and the held-out profile cells, and summarise
the predictions with every survey metric (`cuma.compare.methods_run`). The non-LLM references
(population majority, cell majority, logistic regression) always run on the same splits, listed or not,
because they are what the LLM methods must beat. The splits depend on ``data.seed`` only; with
``data_seeds`` the whole comparison repeats for each, and the report pools every (seed, data seed) run.

Under ``accelerate launch`` every process runs this driver: training is data-parallel (`cuma.train`),
scoring shares its batches out over the processes and gathers every prediction
(`cuma.evaluation.scoring`), and only the main process writes files; ``cuma compare`` logs on the main
process only. The processes share one machine: the quick run's temporary checkpoint folder is made by
the main process and its name broadcast to the others.
A chat dataset (PRISM, Community Alignment) makes it a preference comparison
(`cuma.compare.preference_run`), in the same report directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from accelerate.utils import broadcast_object_list

from cuma.atomic import atomic_path
from cuma.compare.environment import machine, versions
from cuma.compare.figures import make_figures
from cuma.compare.finished import load_finished, save_finished
from cuma.compare.methods_run import MethodResult, MethodRunner, Stopwatch
from cuma.compare.preference_run import compare_preferences
from cuma.compare.report import results_table, write_report
from cuma.compare.report_dir import locked_report_dir
from cuma.compare.results import ComparisonResults, DataSummary, Figure, Machine, MethodRun
from cuma.compare.tables import run_label, write_tables
from cuma.config import ExperimentConfig
from cuma.data.chat_experiment import CHAT_DATASETS
from cuma.data.experiment import EVAL_SPLITS, SPLITS, ComparisonData, prepare_data
from cuma.data.render import render_prompt
from cuma.encoder import make_encoder
from cuma.evaluation.interference import GradientInterference
from cuma.evaluation.interference_plot import plot_interference
from cuma.evaluation.topology import RoutingTrace
from cuma.judges import Judge
from cuma.metrics import BootstrapConfig, comparison_evidence, population_frame
from cuma.models import load_base_model
from cuma.preflight import (
    check_comparison_launch,
    check_fields,
    check_fresh,
    check_letters,
    check_resume,
    check_scored_respondents,
    check_settings,
    check_starting_points,
)
from cuma.processes import process_state
from cuma.reference_baselines import REFERENCE_BASELINES

logger = logging.getLogger("cuma.compare")


def run_comparison(
    config: ExperimentConfig,
    quick: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    resume_changed: Sequence[str] = (),
    judge: Judge | None = None,
) -> Path:
    """Run the comparison ``config`` describes and return its report directory (``config.output_dir``).

    ``quick`` marks a config made by `quick_config`: the report says so, and training checkpoints go to a
    temporary directory that is deleted afterwards. Otherwise they stay in ``<output_dir>/train``, and
    ``resume`` continues from them; without it, leftover checkpoints are an error before any work, so a
    changed config never silently reuses old weights. Every setting is checked before any model work
    (`cuma.preflight`). The report directory is locked for the run, and one holding a previous
    report is refused unless ``resume`` or ``overwrite`` (which moves the old report aside first), see
    `cuma.compare.report_dir`. ``resume_changed`` names settings a resume may change on purpose.
    ``judge`` replaces the config's judge of a preference comparison (any `cuma.judges.Judge`, a Python
    function's included).
    """
    chat = config.data.dataset in CHAT_DATASETS
    # The survey references need survey answers; a chat dataset compares its methods with the base model.
    methods = list(dict.fromkeys(config.methods if chat else [*config.methods, *REFERENCE_BASELINES]))
    check_comparison_launch()
    check_settings(config, methods)
    if judge is not None and not chat:
        raise ValueError(
            "a judge is used by preference comparisons only (data.dataset prism or community-alignment)"
        )
    drive = functools.partial(compare_preferences, judge=judge) if chat else _compare
    out = Path(config.output_dir)
    with locked_report_dir(out, resume=resume, overwrite=overwrite):
        if quick:
            with _shared_temporary_dir("cuma-quick-train-") as train_root:
                return drive(config, methods, train_root, quick, resume, resume_changed)
        train_root = out / "train"
        several = len(config.data_seed_list) > 1
        for data_seed in config.data_seed_list:
            root = data_train_root(train_root, data_seed, several)
            if not resume:
                check_fresh(root, config, methods)
            check_starting_points(root, config, methods)
        return drive(config, methods, train_root, quick, resume, resume_changed)


@contextlib.contextmanager
def _shared_temporary_dir(prefix: str) -> Iterator[Path]:
    """A temporary folder every process uses: the main process makes it, and removes it at the end."""
    state = process_state()
    name = [tempfile.mkdtemp(prefix=prefix) if state.is_main_process else None]
    broadcast_object_list(name)
    try:
        yield Path(name[0])
    finally:
        if state.is_main_process:
            shutil.rmtree(name[0], ignore_errors=True)


def _compare(
    config: ExperimentConfig,
    methods: list[str],
    train_root: Path,
    quick: bool,
    resume: bool,
    resume_changed: Sequence[str] = (),
) -> Path:
    out = Path(config.output_dir)
    clock = Stopwatch()
    started = time.perf_counter()
    logger.info("comparison of %s on %s -> %s", ", ".join(methods), config.data.dataset, out)
    data_seeds = config.data_seed_list
    several = len(data_seeds) > 1
    # Every data seed's split and sample, and the settings that name profile fields, before any model work.
    prepared_data: dict[int, ComparisonData] = {}
    for data_seed in data_seeds:
        which = f" (data seed {data_seed})" if several else ""
        with clock.stage(f"load and split data{which}"):
            prepared_data[data_seed] = data = prepare_data(config.with_data_seed(data_seed).data)
        fields = config.eval.group_fields or data.survey.profile_fields
        main_group = config.eval.main_group or fields[0]
        check_fields(config, fields, main_group, data.survey.profile_fields)
        check_scored_respondents(data)
    with clock.stage(f"load base model {config.model.name}"):
        base, tokenizer = load_base_model(config.model.name, dtype=config.model.dtype)
    with clock.stage(f"load encoder ({config.model.encoder})"):
        encoder = make_encoder(config.model)
    runs: list[MethodRun] = []
    predictions: dict[str, dict[str, pd.DataFrame]] = {}  # the first (seed, data seed)'s, for the figures
    every_run: dict[tuple[str, int, int], dict[str, pd.DataFrame]] = {}  # (method, seed, data seed)
    routing: dict[str, RoutingTrace] = {}
    interference: dict[str, GradientInterference] = {}
    state = process_state()
    for data_seed in data_seeds:
        seeded, data = config.with_data_seed(data_seed), prepared_data[data_seed]
        which = f" (data seed {data_seed})" if several else ""
        check_letters(tokenizer, data)
        root = data_train_root(train_root, data_seed, several)
        if resume:
            check_resume(root, seeded, methods, base, data, resume_changed)
        with clock.stage(f"encode profiles{which}"):
            data = data.with_embeddings(encoder)
        runner = MethodRunner(
            seeded,
            data,
            base,
            tokenizer,
            encoder,
            fields,
            main_group,
            config.eval.cell_fields or fields,
            root,
            resume,
            tuple(resume_changed),
            clock,
        )
        untrained: dict[str, MethodResult] = {}  # a prompting method's scores do not depend on the seed
        scored = [split for split in EVAL_SPLITS if data.splits[split]]
        for seed in config.seeds:
            label = run_label(seed, data_seed if several else None)
            for name in methods:
                first = seed == config.seeds[0] and data_seed == data_seeds[0]  # the run the figures draw
                kept = load_finished(out, name, label, seeded, scored) if resume else None
                if kept is not None:
                    result = kept
                elif name in untrained:
                    done = untrained[name]
                    result = MethodResult(dataclasses.replace(done.run, seed=seed), done.predictions)
                else:
                    result = runner.run(name, seed)
                    result = dataclasses.replace(
                        result, run=dataclasses.replace(result.run, data_seed=data_seed)
                    )
                if result.run.kind == "prompt":
                    untrained.setdefault(name, result)
                run = result.run
                if state.is_main_process and kept is None:
                    _save_predictions(out, name, label, result.predictions)
                    run = dataclasses.replace(
                        run, tables=write_tables(out, name, label, result.predictions, fields)
                    )
                    save_finished(out, name, label, run, seeded, result.routing if first else None)
                runs.append(run)
                every_run[name, seed, data_seed] = result.predictions
                if first:
                    predictions[name] = result.predictions
                    if result.routing is not None:
                        routing[name] = result.routing
                    if result.interference is not None:
                        interference[name] = result.interference
    data, first = prepared_data[data_seeds[0]], config.seeds[0]  # the report describes the first sample
    if state.is_main_process:
        with clock.stage("intervals, tests and noise floors"):
            settings = config.eval
            evidence = comparison_evidence(
                every_run,
                fields,
                BootstrapConfig(settings.bootstrap_resamples, settings.confidence, settings.bootstrap_seed),
                settings.noise_floor_draws,
                population_frame(data.survey.answers, data.survey.respondents, fields),
            )
        with clock.stage("figures and report"):
            figures, topology = make_figures(out, predictions, routing, main_group, first, evidence)
            for name, result in interference.items():
                path = plot_interference(result, out / "figures" / f"interference-{name}.png")
                title = (
                    f"{name}: cosine of the {main_group} groups' answer-loss gradients (mean off-diagonal "
                    f"{result.mean_cosine:.3f}; negative = the groups pull the weights apart)"
                )
                figures.append(Figure(title, path.relative_to(out).as_posix()))
            clock.timings["total"] = time.perf_counter() - started
            results = ComparisonResults(
                title=f"CuMA comparison on {config.data.dataset}" + (" (quick)" if quick else ""),
                created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                command=" ".join(sys.argv),
                quick=quick,
                config=config,
                versions=versions(),
                machine=Machine(**machine()),
                data=_data_summary(config, data, fields, main_group, _prompt_lengths(tokenizer, data)),
                timings=clock.timings,
                runs=runs,
                topology=topology,
                figures=figures,
                table=results_table(runs, evidence),
                evidence=evidence,
            )
            write_report(results, out)
        logger.info("report written to %s (total %.1f s)", out / "report.md", time.perf_counter() - started)
    state.wait_for_everyone()  # every process returns once the report exists
    return out


def _data_summary(
    config: ExperimentConfig, data: ComparisonData, fields: list[str], main_group: str, lengths: list[int]
) -> DataSummary:
    survey = data.survey
    return DataSummary(
        dataset=config.data.dataset,
        survey_answers=len(survey.answers),
        survey_respondents=len(survey.respondents),
        n_questions=len(survey.questions),
        sizes=data.sizes(),
        respondents=data.respondents,
        heldout_cells=data.cells,
        group_fields=fields,
        main_group=main_group,
        cell_fields=config.eval.cell_fields or fields,
        max_length=config.data.max_length,
        longest_prompt=max(lengths),
        mean_prompt=float(np.mean(lengths)),
    )


def _prompt_lengths(tokenizer: Any, data: ComparisonData) -> list[int]:
    """Token counts of the persona prompts (the longer variant) of every sampled example."""
    return [
        len(render_prompt(tokenizer, ex.prompt_messages)) for split in SPLITS for ex in data.splits[split]
    ]


def data_train_root(train_root: Path, data_seed: int, several: bool) -> Path:
    """Where a data seed's training runs go: ``train_root`` itself, or ``data-seed<N>/`` inside it when a
    comparison runs over several data seeds (their runs train on different samples)."""
    return train_root / f"data-seed{data_seed}" if several else train_root


def _save_predictions(out: Path, name: str, label: str, preds: dict[str, pd.DataFrame]) -> None:
    folder = out / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    for split, frame in preds.items():
        with atomic_path(folder / f"{name}-{label}-{split}.parquet") as tmp:
            frame.to_parquet(tmp, index=False)
