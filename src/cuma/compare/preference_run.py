"""The preference comparison: ``cuma compare`` on a chat dataset (PRISM, Community Alignment).

Per training seed and methods entry: build the method on a fresh copy of the base model (or start from
the SFT run that ``train.init_from`` names), train it with its objective on the training annotators'
rows (`cuma.train.recipe.chat_recipe`: SFT on chosen responses, DPO on pairs, GRPO with the judge's
reward), then score the test annotators: CA-Acc on the choice sets (`cuma.evaluation.choice`) and the
win-rate of its responses against the base model's, which are generated once (`cuma.evaluation.preference`).
The chat prompts carry the profile in the system prompt for every method (`data.persona_in_prompt`),
as the authors' setting does. Training is data-parallel under ``accelerate launch``; the evaluation runs
on the main process only (a judge's requests are not repeated per process), which writes every file.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import logging
import sys
import time
from pathlib import Path
from typing import Any

from cuma.compare.environment import machine, versions
from cuma.compare.methods_run import Stopwatch, parameter_count, training_record
from cuma.compare.preference_report import PreferenceResults, PreferenceRun, write_preference_report
from cuma.config import ExperimentConfig
from cuma.data.chat_experiment import ChatComparisonData, prepare_chat_data
from cuma.encoder import make_encoder
from cuma.errors import ConfigError
from cuma.evaluation.choice import evaluate_choice_accuracy
from cuma.evaluation.preference import generate_responses, judge_pairs, pair_table
from cuma.judges import Judge, JudgeFailureError, build_judge
from cuma.methods import PreparedModel, build_method, entry_config
from cuma.models import load_base_model
from cuma.processes import process_state
from cuma.train.layout import run_identity, train_dir
from cuma.train.recipe import chat_recipe, starting_method
from cuma.train.trainer import train

logger = logging.getLogger("cuma.compare")


def compare_preferences(
    config: ExperimentConfig,
    methods: list[str],
    train_root: Path,
    quick: bool,
    resume: bool,
    resume_changed: tuple[str, ...] | list[str] = (),
    judge: Judge | None = None,
) -> Path:
    """Run the preference comparison ``config`` describes into ``config.output_dir`` (module docstring);
    `cuma.compare.run.run_comparison` has locked the directory and checked the settings. ``judge``
    replaces the one ``config.judge`` describes."""
    out, clock, started = Path(config.output_dir), Stopwatch(), time.perf_counter()
    state = process_state()
    with clock.stage("load and split data"):
        data = prepare_chat_data(config.data)
    with clock.stage(f"load base model {config.model.name}"):
        base, tokenizer = load_base_model(config.model.name, dtype=config.model.dtype)
    with clock.stage(f"encode profiles ({config.model.encoder})"):
        encoder = make_encoder(config.model)
        data = data.with_embeddings(encoder)
    judge = judge or _judge(config, base, tokenizer)
    prompts = data.sft["test"]
    base_responses: list[str] = []
    if state.is_main_process:
        baseline = build_method("base", copy.deepcopy(base), config, encoder=encoder)
        with clock.stage("base: responses"):
            base_responses = generate_responses(
                baseline, tokenizer, prompts, config.preference, desc="generating (base)"
            )
    runs = []
    for seed in config.seeds:
        for entry in methods:
            name, run_config = entry_config(entry, config)
            run_config = dataclasses.replace(
                run_config, train=dataclasses.replace(run_config.train, seed=seed)
            )
            prepared = starting_method(run_config, name, copy.deepcopy(base), encoder, train_root)
            training: dict[str, Any] = {}
            seconds: dict[str, float] = {}
            if prepared.trainable:
                stage = f"{entry} seed {seed}: train"
                with clock.stage(stage):
                    training = _train(
                        run_config, name, prepared, data, tokenizer, judge, train_root, resume, resume_changed
                    )
                seconds["train"] = clock.timings[stage]
            if state.is_main_process:
                prepared.to(state.device)
                runs.append(
                    _evaluate(
                        run_config, entry, seed, prepared, data, tokenizer, judge, base_responses, out, clock
                    )
                )
                runs[-1] = dataclasses.replace(
                    runs[-1], training=training, seconds={**seconds, **runs[-1].seconds}
                )
    if state.is_main_process:
        clock.timings["total"] = time.perf_counter() - started
        results = PreferenceResults(
            title=f"CuMA preference comparison on {config.data.dataset}" + (" (quick)" if quick else ""),
            created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            command=" ".join(sys.argv),
            config=config.to_dict(),
            dataset=data.name,
            source=data.source,
            sizes=data.sizes(),
            judge={
                "kind": config.judge.kind,
                "model": config.judge.model,
                "base_url": config.judge.base_url,
                "counts": judge.counts.as_dict(),
            },
            machine=machine(),
            versions=versions(),
            runs=runs,
            timings=clock.timings,
        )
        write_preference_report(results, out)
        logger.info("report written to %s (total %.1f s)", out / "report.md", clock.timings["total"])
    judge.close()
    state.wait_for_everyone()
    return out


def _judge(config: ExperimentConfig, base: Any, tokenizer: Any) -> Judge:
    """The config's judge; a local judge that names the base model reuses the loaded one (it stays frozen:
    every method trains a copy)."""
    if config.judge.kind == "callable":
        raise ConfigError(
            "judge.kind=callable needs a Python function; use cuma.judges in code, not a config"
        )
    if config.judge.kind == "local" and config.judge.model == config.model.name:
        return build_judge(config.judge, model=base, tokenizer=tokenizer)
    return build_judge(config.judge)


def _train(
    config: ExperimentConfig,
    name: str,
    prepared: PreparedModel,
    data: ChatComparisonData,
    tokenizer: Any,
    judge: Judge,
    train_root: Path,
    resume: bool,
    resume_changed: tuple[str, ...] | list[str],
) -> dict[str, Any]:
    objective = config.train.objective
    recipe = chat_recipe(config, data, tokenizer, prepared, process_state().device, judge)
    rows = data.dpo["train"] if objective == "dpo" else data.sft["train"]
    result = train(
        prepared,
        recipe.dataset,
        recipe.collate_fn,
        config.objective_train,
        train_dir(train_root, name, config.train.seed, objective),
        objective=recipe.objective,
        resume=resume,
        run_identity=run_identity(config, name, rows),
        allow_changed=resume_changed,
    )
    return training_record(config, prepared, result)


def _evaluate(
    config: ExperimentConfig,
    entry: str,
    seed: int,
    prepared: PreparedModel,
    data: ChatComparisonData,
    tokenizer: Any,
    judge: Judge,
    base_responses: list[str],
    out: Path,
    clock: Stopwatch,
) -> PreferenceRun:
    """CA-Acc (when the dataset has choice sets) and the win-rate against the base model (not for base)."""
    tables = out / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    ca_acc = win_rate = None
    if data.choice["test"]:
        stage = f"{entry} seed {seed}: CA-Acc"
        with clock.stage(stage):
            choice = evaluate_choice_accuracy(prepared, tokenizer, data.choice["test"], config.preference)
        choice.table.to_csv(tables / f"{entry}-seed{seed}-choice.csv", index=False)
        ca_acc, seconds["ca_acc"] = choice.accuracy, clock.timings[stage]
    if prepared.name != "base":
        stage = f"{entry} seed {seed}: win-rate"
        with clock.stage(stage):
            prompts = data.sft["test"]
            responses = generate_responses(
                prepared, tokenizer, prompts, config.preference, desc=f"generating ({entry})"
            )
            judged = judge_pairs(judge, pair_table(prompts, responses, base_responses), config.preference)
        judged.table.to_csv(tables / f"{entry}-seed{seed}-win-rate.csv", index=False)
        share = judged.failed / len(judged.table)
        if share > config.judge.max_failure_share:
            raise JudgeFailureError(
                f"{entry} seed {seed}: {judged.failed} of {len(judged.table)} verdicts failed, more than "
                f"judge.max_failure_share={config.judge.max_failure_share} (verdicts kept in {tables})"
            )
        win_rate, seconds["win_rate"] = judged.win_rate, clock.timings[stage]
    trainable = parameter_count(prepared)[0] if prepared.trainable else None
    objective = config.train.objective if prepared.trainable else None
    return PreferenceRun(entry, seed, objective, trainable, ca_acc, win_rate, seconds=seconds)
