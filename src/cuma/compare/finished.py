"""Finished runs of a comparison, kept beside their predictions, so that ``--resume`` does not train or
score them again.

After a method and seed is scored, its record (`MethodRun`) goes to ``predictions/<method>-<run>.json``
with the settings it ran under; a resumed comparison reuses it, and the run's prediction files, only when
those settings are the current ones exactly and every prediction file is there; the output folder and the
train settings that change how a run saves or spends memory, not what it computes
(`cuma.train.layout.RESUME_NEUTRAL`), are not compared.
The figures draw the first run of each method: its routing trace is kept too
(``predictions/<method>-<run>-routing.npz`` and ``.parquet``), and its gradient-interference result is in
the record, so a comparison finished by a later process draws the same figures.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from cuma.atomic import atomic_path
from cuma.compare.methods_run import MethodResult
from cuma.compare.results import MethodRun
from cuma.config import ExperimentConfig
from cuma.evaluation.interference import GradientInterference
from cuma.evaluation.topology import RoutingTrace
from cuma.train.layout import RESUME_NEUTRAL

logger = logging.getLogger("cuma.compare")


def _settings(config: ExperimentConfig) -> dict:
    raw = config.to_dict()
    raw.pop("output_dir")
    return raw


def _compared(settings: dict) -> dict:
    """The settings that must match for a kept run to be reused (module docstring)."""
    train = {k: v for k, v in settings.get("train", {}).items() if k not in RESUME_NEUTRAL}
    return {**settings, "train": train}


def _routing_stem(out: Path, name: str, label: str) -> Path:
    return out / "predictions" / f"{name}-{label}-routing"


def save_finished(
    out: Path,
    name: str,
    label: str,
    run: MethodRun,
    config: ExperimentConfig,
    routing: RoutingTrace | None = None,
) -> None:
    """Record a scored run (its predictions must already be saved) under the settings it ran with, and
    its ``routing`` trace when given. The record is written last: it marks the run as finished."""
    if routing is not None:
        routing.save(_routing_stem(out, name, label))
    record = {"settings": _settings(config), "run": json.loads(run.to_json())}
    with atomic_path(out / "predictions" / f"{name}-{label}.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def load_finished(
    out: Path, name: str, label: str, config: ExperimentConfig, splits: list[str]
) -> MethodResult | None:
    """The run, predictions, routing trace (if one was kept) and interference result `save_finished`
    kept, or None when there are none for these settings."""
    folder = out / "predictions"
    path = folder / f"{name}-{label}.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    current = json.loads(json.dumps(_settings(config)))
    if _compared(record.get("settings", {})) != _compared(current):
        logger.info("%s %s: kept run has other settings; running it again", name, label)
        return None
    files = {split: folder / f"{name}-{label}-{split}.parquet" for split in splits}
    if not all(file.is_file() for file in files.values()):
        return None
    run = MethodRun.from_json(json.dumps(record["run"]), str(path))
    stem = _routing_stem(out, name, label)
    routing = RoutingTrace.load(stem) if stem.with_name(stem.name + ".npz").is_file() else None
    kept = run.training.get("interference")
    interference = None if kept is None else GradientInterference.from_dict(kept)
    logger.info("%s %s: reusing the finished run in %s", name, label, folder)
    predictions = {split: pd.read_parquet(file) for split, file in files.items()}
    return MethodResult(run, predictions, routing, interference)
