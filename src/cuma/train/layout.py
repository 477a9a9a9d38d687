"""Where each training run lives and what identifies it, so `cuma train`, `cuma compare` and their checks
find the same folder and refuse to resume a checkpoint of a different run."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cuma.config import ExperimentConfig, TrainConfig

# Train settings that change how a run reports, saves or spends memory, not what it computes: free to
# change on resume, and not compared when a comparison reuses a finished run (cuma/compare/finished.py).
RESUME_NEUTRAL = (
    "save_every",
    "keep_checkpoints",
    "log_every",
    "routing_stats_every",
    "report_to",
    "gradient_checkpointing",
)


def train_dir(train_root: Path, name: str, seed: int, objective: str = "sft") -> Path:
    """The run folder of method ``name`` trained with ``seed`` (its checkpoints and logs go inside); a
    preference objective has its own (``<name>-dpo-seed<seed>``), so it never meets the SFT run's."""
    stem = name if objective == "sft" else f"{name}-{objective}"
    return train_root / f"{stem}-seed{seed}"


def train_settings(config: TrainConfig) -> dict[str, Any]:
    """The train settings that determine a run's result, as ``train.<field>`` entries."""
    return {f"train.{k}": v for k, v in dataclasses.asdict(config).items() if k not in RESUME_NEUTRAL}


def run_identity(config: ExperimentConfig, method: str, examples: Sequence[Any]) -> dict[str, Any]:
    """Everything besides the train settings that determines a trained method: the cuma version, the
    model and encoder, the data settings and the exact training sample (a hash of its example ids in
    order), and the method's adapter overrides."""
    from cuma import __version__

    sample = hashlib.sha256(
        "\n".join(f"{ex.respondent_id}\t{ex.question_id}" for ex in examples).encode()
    ).hexdigest()
    data = {f"data.{k}": v for k, v in dataclasses.asdict(config.data).items() if k != "score_split"}
    model = {f"model.{k}": v for k, v in dataclasses.asdict(config.model).items()}
    objective = config.train.objective
    section = {} if objective == "sft" else dataclasses.asdict(getattr(config, objective))
    return {
        "cuma_version": __version__,
        "method": method,
        **model,
        **data,
        "data.train_sample_sha256": sample,
        f"adapter_overrides.{method}": config.adapter_overrides.get(method, {}),
        **{f"{objective}.{k}": v for k, v in section.items()},
    }


def starting_model(init_from: str, method: str, seed: int, train_root: Path) -> Path:
    """The model folder ``train.init_from`` names for ``method`` and ``seed``: ``{method}``, ``{seed}`` and
    ``{train_root}`` (the run's training folder) are filled in, so one path serves every method of a
    comparison, and a run folder stands for its newest valid checkpoint's model."""
    from cuma.sidecar import SIDECAR_NAME
    from cuma.train.checkpoint import MODEL_DIR, newest_valid_checkpoint

    path = Path(init_from.format(method=method, seed=seed, train_root=train_root)).expanduser()
    if (path / SIDECAR_NAME).is_file():
        return path
    start, skipped = newest_valid_checkpoint(path / "checkpoints")
    if start is None:
        detail = f": {'; '.join(skipped)}" if skipped else ""
        raise FileNotFoundError(
            f"train.init_from={init_from!r}: {path} is neither a saved model folder nor a run folder with a "
            f"valid checkpoint{detail}"
        )
    return start / MODEL_DIR
