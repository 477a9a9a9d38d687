"""The per-question tables behind the summary metrics, written as CSVs next to the report.

`cuma.metrics.summarize` reduces two tables to means: the distribution table (per question and group,
with a population row per question: EMD, Jensen–Shannon and total variation of the mean predicted and of
the argmax distribution against the human one) and the entropy table (per question: entropy of the argmax
answers, of the mean predicted distribution and of the human answers). The CSVs keep the rows, so a
reader can see which questions and groups drive a mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from cuma.atomic import atomic_path
from cuma.metrics import distribution_table, entropy_table


def question_tables(predictions: pd.DataFrame, fields: Sequence[str]) -> dict[str, pd.DataFrame]:
    """Kind -> table of one split's predictions, with the group settings `summarize` uses."""
    return {"distribution": distribution_table(predictions, fields), "entropy": entropy_table(predictions)}


def table_path(kind: str, method: str, run: str, split: str) -> Path:
    """Where a table goes, relative to the report directory; ``run`` names the seeds (`run_label`)."""
    return Path("tables") / f"{kind}-{method}-{run}-{split}.csv"


def run_label(seed: int, data_seed: int | None = None) -> str:
    """``seed42``, or ``seed42-data1`` in a comparison over several data seeds."""
    return f"seed{seed}" + ("" if data_seed is None else f"-data{data_seed}")


def write_tables(
    out: Path, method: str, run: str, predictions: Mapping[str, pd.DataFrame], fields: Sequence[str]
) -> dict[str, dict[str, str]]:
    """Write every table of every split under ``out``; returns kind -> split -> path relative to ``out``."""
    (out / "tables").mkdir(parents=True, exist_ok=True)
    written: dict[str, dict[str, str]] = {}
    for split, frame in predictions.items():
        for kind, table in question_tables(frame, fields).items():
            path = table_path(kind, method, run, split)
            with atomic_path(out / path) as tmp:
                table.to_csv(tmp, index=False)
            written.setdefault(kind, {})[split] = path.as_posix()
    return written
