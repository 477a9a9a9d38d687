"""``cuma sweep``: each trained entry's learning rate chosen on validation respondents, then the test
respondents scored once.

For every trainable methods entry and every rate of the grid, a comparison of that entry alone with
``data.score_split=valid``, one training seed (the first of ``seeds``) and the first data seed, in its own
report under ``<output_dir>/sweep/<entry>/lr<rate>`` (a finished one is reused, so an interrupted sweep
resumes where it stopped). The rate with the best validation score (log-loss by default: a proper score,
lower is better; ties go to the smaller rate) becomes the entry's ``method_lr``. The final comparison runs
every entry at its chosen rate on the test respondents, once, into ``output_dir``; ``sweep.json`` there
records the grid, every validation score, the choices and which of them lie at an end of the grid
(their best rate may lie outside it; a warning says so too). A ``NAME@dpo`` entry is tuned on ``dpo.lr``
after its SFT entry has its rate; its sweep runs list the SFT entry first (trained again there, at its
chosen rate), since DPO starts from it. Trials skip the gradient-interference diagnostic (it does not
bear on the rate and costs about a tenth of a trial); the final comparison runs it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

from cuma.atomic import atomic_path
from cuma.config import ExperimentConfig
from cuma.errors import ConfigError

logger = logging.getLogger("cuma.compare")

METRICS = {"log_loss": min, "brier": min, "accuracy": max}
"""Validation scores a sweep can choose by, and which end of each is better."""

SWEEP_FILE = "sweep.json"


def configure(parser: argparse.ArgumentParser) -> None:
    from cuma.compare.cli import DEFAULT_CONFIG
    from cuma.train.cli import add_run_arguments

    parser.add_argument("--config", type=Path, help=f"experiment YAML (default: {DEFAULT_CONFIG.name})")
    parser.add_argument(
        "--grid", required=True, help="learning rates to try, comma-separated, e.g. 1e-4,3e-4,1e-3"
    )
    parser.add_argument(
        "--metric", default="log_loss", choices=sorted(METRICS), help="validation score to choose by"
    )
    add_run_arguments(parser, "the sweep on a tiny random model and a small sample (seconds)")
    parser.set_defaults(func=main)


def parse_grid(text: str) -> list[float]:
    """``"1e-4,3e-4"`` -> sorted distinct positive rates; an empty or bad grid is a ``ConfigError``."""
    try:
        rates = sorted({float(item) for item in text.split(",") if item.strip()})
    except ValueError:
        raise ConfigError(
            f"--grid {text!r}: expected comma-separated learning rates, e.g. 1e-4,3e-4"
        ) from None
    if not rates:
        raise ConfigError(f"--grid {text!r}: the grid is empty; give at least one learning rate")
    if any(not rate > 0 or not math.isfinite(rate) for rate in rates):
        raise ConfigError(f"--grid {text!r}: every learning rate must be a positive number")
    return rates


def run_sweep(
    config: ExperimentConfig,
    grid: Sequence[float],
    metric: str = "log_loss",
    quick: bool = False,
    resume: bool = False,
) -> Path:
    """Tune every trainable entry of ``config.methods`` on ``grid`` (module docstring); return the final
    report directory. ``resume`` continues an interrupted final comparison (the trials resume by
    themselves)."""
    from cuma.compare.results import RESULTS_FILE
    from cuma.compare.run import run_comparison
    from cuma.methods import get_method, split_entry

    if metric not in METRICS:
        raise ConfigError(f"metric {metric!r}: expected one of {', '.join(METRICS)}")
    if not grid:
        raise ConfigError("the learning-rate grid is empty")
    out = Path(config.output_dir)
    chosen: dict[str, float] = {}
    scores: dict[str, dict[str, float]] = {}
    for entry in config.methods:
        name, objective = split_entry(entry)
        if not get_method(name).trainable:
            continue
        before = [name] if objective is not None and name in config.methods else []
        scores[entry] = {}
        for rate in grid:
            folder = out / "sweep" / entry / f"lr{rate:g}"
            # One training seed on the first data seed's validation respondents: a sweep over every seed
            # would cost as much as the comparison times the grid.
            run = config.with_data_seed(config.data_seed_list[0]).with_overrides(
                [
                    "data.score_split=valid",
                    f"output_dir={folder}",
                    f"seeds=[{config.seeds[0]}]",
                    "data_seeds=[]",
                    # The interference diagnostic does not bear on the rate; the final runs have it.
                    "eval.interference_examples=null",
                ]
            )
            run = _replace_methods(run, [*before, entry], {**{m: chosen[m] for m in before}, entry: rate})
            if not (folder / RESULTS_FILE).is_file():
                # An interrupted run continues from its checkpoints (a quick run keeps none).
                run_comparison(run, quick=quick, resume=folder.exists() and not quick, overwrite=quick)
            scores[entry][f"{rate:g}"] = _validation_score(folder, entry, metric)
            logger.info("sweep %s lr %g: validation %s %.4f", entry, rate, metric, scores[entry][f"{rate:g}"])
        chosen[entry] = best_rate(scores[entry], metric)
    final = _replace_methods(config, list(config.methods), {**config.method_lr, **chosen})
    report = run_comparison(final, quick=quick, resume=resume)
    edges = grid_edges(grid, chosen)
    for entry, edge in edges.items():
        logger.warning(
            "sweep %s: the chosen lr %g is the %s of the grid; a wider grid may score better on validation",
            entry, chosen[entry], edge,
        )  # fmt: skip
    record = {"grid": list(grid), "metric": metric, "validation": scores, "chosen": chosen, "at_edge": edges}
    with atomic_path(report / SWEEP_FILE) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return report


def best_rate(scores: dict[str, float], metric: str) -> float:
    """The rate (keys as written by `run_sweep`) with the best score; ties go to the smaller rate."""
    sign = -1.0 if METRICS[metric] is max else 1.0
    return min((float(rate) for rate in scores), key=lambda rate: (sign * scores[f"{rate:g}"], rate))


def grid_edges(grid: Sequence[float], chosen: dict[str, float]) -> dict[str, str]:
    """The entries whose chosen rate is the grid's ``lowest`` or ``highest`` (a grid of two or more):
    their best rate may lie outside the grid, which a report should say."""
    if len(grid) < 2:
        return {}
    ends = {min(grid): "lowest", max(grid): "highest"}
    return {entry: ends[rate] for entry, rate in chosen.items() if rate in ends}


def _replace_methods(
    config: ExperimentConfig, methods: list[str], rates: dict[str, float]
) -> ExperimentConfig:
    raw = config.to_dict()
    raw["methods"], raw["method_lr"] = methods, {k: v for k, v in rates.items() if k in methods}
    return ExperimentConfig.from_dict(raw, source="cuma sweep")


def _validation_score(folder: Path, entry: str, metric: str) -> float:
    from cuma.compare.results import RESULTS_FILE, ComparisonResults

    runs = ComparisonResults.read(folder / RESULTS_FILE).runs
    values = [run.metrics["test"][metric] for run in runs if run.method == entry]
    if not values:
        raise ValueError(f"{folder / RESULTS_FILE}: no run of {entry!r}")
    return float(sum(values) / len(values))


def main(args: argparse.Namespace) -> None:
    from cuma.compare.cli import DEFAULT_CONFIG, print_report
    from cuma.processes import log_from_main_process
    from cuma.train.cli import load_config

    grid = parse_grid(args.grid)
    config = load_config(args.config or DEFAULT_CONFIG, args.overrides, quick=args.quick)
    main_process = log_from_main_process()
    out = run_sweep(config, grid, args.metric, quick=args.quick, resume=args.resume)
    if main_process:
        record = json.loads((out / SWEEP_FILE).read_text())
        edges = record["at_edge"]
        print(
            "chosen on validation: "
            + ", ".join(
                f"{k} lr {v:g}" + (f" ({edges[k]} of the grid)" if k in edges else "")
                for k, v in record["chosen"].items()
            )
        )
        print_report(out)
