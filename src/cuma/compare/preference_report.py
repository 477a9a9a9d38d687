"""A preference comparison's results and its report directory: results.json, results.csv, report.md,
report.html, the same four files as a survey comparison (`cuma.compare.report.REPORT_FILES`).

Per method and seed: CA-Acc (Community Alignment's 4-way choice, chance 25 %) and the win-rate of the
method's responses against the base model's, judged in both orders, as W / (W + L + T) and
(W + T/2) / (W + L + T), each with its bootstrap interval over prompts (`cuma.metrics.preference`).
The win-rate column is named after the dataset, as in the paper: CA-WR or PRISM-WR.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from cuma.atomic import atomic_path
from cuma.compare.report import REPORT_FILES, markdown_table
from cuma.compare.results import ResultsTable
from cuma.metrics.preference import ChoiceAccuracy, WinRate

WIN_RATE_NAMES = {"community-alignment": "CA-WR", "prism": "PRISM-WR"}
"""The paper's name of the win-rate column per dataset."""


@dataclass(frozen=True)
class PreferenceRun:
    """One method and seed of a preference comparison.

    Attributes:
        method: the methods entry (``cuma@dpo``: the method and its objective).
        objective: what it was trained with (None: not trained).
        trainable_params: parameters trained (None: nothing trained).
        ca_acc: CA-Acc on the scored choice sets (None: the dataset has none).
        win_rate: against the base model's responses (None for the base model itself).
        training: steps, final loss, model folder and what the trainer recorded.
        seconds: time of training and of each evaluation.
    """

    method: str
    seed: int
    objective: str | None
    trainable_params: int | None
    ca_acc: ChoiceAccuracy | None
    win_rate: WinRate | None
    training: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PreferenceResults:
    """Everything results.json holds for a preference comparison; every report cell comes from it."""

    title: str
    created: str
    command: str
    config: dict[str, Any]
    dataset: str
    source: str
    sizes: dict[str, dict[str, int]]
    judge: dict[str, Any]
    machine: dict[str, Any]
    versions: dict[str, str]
    runs: list[PreferenceRun]
    timings: dict[str, float]

    def to_json(self) -> str:
        return json.dumps({"kind": "preference", **dataclasses.asdict(self)}, indent=2, default=str) + "\n"

    def table(self) -> ResultsTable:
        wr = WIN_RATE_NAMES.get(self.dataset, "WR")
        columns = [
            "Method",
            "Seed",
            "Objective",
            "Trainable params",
            "CA-Acc ↑ [95% CI]",
            f"{wr} ↑ W/(W+L+T) [95% CI]",
            f"{wr} tie-adjusted ↑ [95% CI]",
            "W / L / T / failed",
        ]
        return ResultsTable(columns, [_row(run) for run in self.runs])


def _row(run: PreferenceRun) -> list[str]:
    acc, wr = run.ca_acc, run.win_rate
    return [
        run.method,
        str(run.seed),
        run.objective or "—",
        "—" if run.trainable_params is None else f"{run.trainable_params:,}",
        "—" if acc is None else _interval(acc.accuracy, acc.ci) + f" (n={acc.n}, chance {acc.chance:.2f})",
        "—" if wr is None else _interval(wr.win_rate, wr.win_rate_ci),
        "—" if wr is None else _interval(wr.tie_adjusted, wr.tie_adjusted_ci),
        "—" if wr is None else f"{wr.wins} / {wr.losses} / {wr.ties} / {wr.failed}",
    ]


def _interval(value: float, ci: tuple[float, float] | None) -> str:
    return f"{value:.3f}" + ("" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]")


NOTES = (
    "CA-Acc: the probability of each response letter at the answer position given the profile, the "
    "prompt and the 4 candidates in a permuted order (recorded per set); accuracy against the annotator's "
    "choice, chance 25 %.",
    "Win-rate: the method's response against the base model's on the same prompt, judged in both orders "
    "(orders that disagree are a tie); failed verdicts are counted and left out of every rate.",
    "Intervals: bootstrap over choice sets / prompts; they do not include training-seed spread.",
)


def write_preference_report(results: PreferenceResults, out_dir: Path) -> Path:
    """Write the four report files into ``out_dir``, each replacing the old one only once all are ready."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = results.table()
    texts = {
        REPORT_FILES[0]: results.to_json(),
        "results.csv": pd.DataFrame(table.rows, columns=table.columns).to_csv(index=False),
        "report.md": _markdown(results, table),
        "report.html": _html(results, table),
    }
    with contextlib.ExitStack() as stack:
        for name in REPORT_FILES:
            stack.enter_context(atomic_path(out_dir / name)).write_text(texts[name], encoding="utf-8")
    return out_dir


def _settings(results: PreferenceResults) -> list[str]:
    sizes = "; ".join(
        f"{kind}: " + ", ".join(f"{k} {v}" for k, v in s.items()) for kind, s in results.sizes.items()
    )
    judge = results.judge
    return [
        f"Dataset {results.dataset} from {results.source}, split by annotator; rows per split: {sizes}",
        f"Judge: {judge.get('kind')} {judge.get('model') or judge.get('base_url') or ''}".rstrip(),
        f"Machine: {results.machine.get('processor')}, {results.machine.get('cpu_count')} CPU cores, "
        f"GPU: {results.machine.get('cuda') or 'none'}",
    ]


def _markdown(results: PreferenceResults, table: ResultsTable) -> str:
    lines = [f"# {results.title}", "", "## Results", "", *markdown_table(table), ""]
    lines += [f"- {note}" for note in NOTES]
    lines += ["", "## Data and settings", "", *(f"- {line}" for line in _settings(results))]
    lines += ["", "## Timings (seconds)", ""]
    lines += markdown_table(
        ResultsTable(["Stage", "Seconds"], [[k, f"{v:.1f}"] for k, v in results.timings.items()])
    )
    lines += ["", "Configs, package versions and machine details: results.json.", ""]
    return "\n".join(lines)


def _html(results: PreferenceResults, table: ResultsTable) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    items = "".join(f"<li>{esc(line)}</li>" for line in [*NOTES, *_settings(results)])
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(results.title)}</title></head><body>"
        f"<h1>{esc(results.title)}</h1><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<ul>{items}</ul><h2>Configuration</h2><pre>{esc(json.dumps(results.config, indent=2))}</pre>"
        "</body></html>\n"
    )
