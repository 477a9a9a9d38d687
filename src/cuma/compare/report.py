"""Writes a comparison's report directory from its results: results.json, results.csv, report.md, report.html.

The results are a `cuma.compare.results.ComparisonResults` (results.json is its ``to_json``); each run
names its per-question CSVs under ``tables/`` (`cuma.compare.tables`), which report.md links. The table
is built from the runs' aggregate over seeds by `build_table`, so every cell of report.md / report.html
/ results.csv is a number in results.json.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import html
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cuma.atomic import atomic_path
from cuma.compare.results import (
    RESULTS_FILE,
    ComparisonResults,
    MethodRun,
    MethodSummary,
    ResultsTable,
    Stat,
    aggregate,
)


@dataclass(frozen=True)
class Column:
    """A column of the paper-style table; ``key`` is ``split.metric`` or a run field in the aggregate."""

    key: str
    header: str
    digits: int = 3
    spread: bool = True  # show ``± std`` over seeds (not for counts fixed by the config)


REPORT_FILES = (RESULTS_FILE, "results.csv", "report.md", "report.html")
"""The files `write_report` writes; results.json marks a directory as holding a finished report."""

TABLE_COLUMNS = (
    Column("trainable_params", "Trainable params", 0, spread=False),
    Column("trainable_pct", "% of base", 3, spread=False),
    Column("test.accuracy", "Accuracy ↑ (argmax)"),
    Column("test.macro_f1", "Macro-F1 ↑ (argmax)"),
    Column("test.wvb_argmax_emd_mean", "EMD mean ↓ (argmax)"),
    Column("test.wvb_argmax_emd_auc_norm", "EMD AUC ↑ (argmax, 0–1)"),
    Column("test.prob_emd_mean", "EMD mean ↓ (prob)"),
    Column("test.sigma_inequity", "σ-inequity ↓ (argmax)"),
    Column("test.collapse_rate", "Collapse rate ↓ (argmax)"),
    Column("test.prob_js_group_mean", "Group JS ↓ (prob)"),
    Column("heldout.accuracy", "Zero-shot accuracy ↑ (held-out profiles, argmax)"),
    Column("heldout.wvb_argmax_emd_mean", "Zero-shot EMD ↓ (argmax)"),
)

TABLE_NOTES = (
    "argmax: from each respondent's most probable option; prob: from the option probabilities.",
    "EMD: WorldValuesBench's per-question 1-D Wasserstein distance between true and argmax answers on "
    "[0, 1]; AUC: area under the share of questions with EMD ≤ t for t = 0…0.6, divided by 0.6. "
    "EMD (prob): per question, between the mean predicted distribution and the human one.",
    "σ-inequity: mean over profile fields of the std of subgroup accuracies (groups of ≥ 5 answers).",
    "Collapse rate: share of questions where every respondent gets the same answer.",
    "Group JS: mean over (question, group) of the Jensen–Shannon distance between the group's mean "
    "predicted distribution and its human answer distribution.",
)
TABLES_NOTE = (
    "distribution: per question and group (population rows have field and group '(all)'), EMD, JS and TV "
    "of the mean predicted (prob) and the argmax distribution against the human one; entropy: per question, "
    "entropy in bits of the argmax answers, the mean predicted distribution and the human answers."
)


def build_table(aggregated: Mapping[str, MethodSummary]) -> ResultsTable:
    """Header and cell strings: ``mean ± std`` over several seeds, ``—`` when undefined."""
    rows = [
        [method, *(format_cell(entry.stats.get(col.key), col.digits, col.spread) for col in TABLE_COLUMNS)]
        for method, entry in aggregated.items()
    ]
    return ResultsTable(["Method", *(col.header for col in TABLE_COLUMNS)], rows)


def results_table(runs: Sequence[MethodRun]) -> ResultsTable:
    """The table of ``runs``: `build_table` of their `aggregate` over seeds."""
    return build_table(aggregate(runs))


def format_cell(stat: Stat | None, digits: int, spread: bool = True) -> str:
    if stat is None or stat.mean is None:
        return "—"
    text = f"{stat.mean:,.{digits}f}"
    if spread and stat.std is not None:
        text += f" ± {stat.std:,.{digits}f}"
    return text


def write_report(results: ComparisonResults, out_dir: Path) -> Path:
    """Write the four report files into ``out_dir`` (figures must already be there) and return it.

    All four are written to temporary files first and replace the old ones only once every one is
    complete (`cuma.atomic`), so a failure leaves the previous report whole, never half old, half new.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {
        RESULTS_FILE: results.to_json(),
        "results.csv": _table_frame(results.aggregate()).to_csv(index=False),
        "report.md": render_markdown(results),
        "report.html": render_html(results, out_dir),
    }
    with contextlib.ExitStack() as stack:
        for name in REPORT_FILES:
            stack.enter_context(atomic_path(out_dir / name)).write_text(texts[name], encoding="utf-8")
    return out_dir


def render_markdown(results: ComparisonResults) -> str:
    table = results.table
    lines = [f"# {results.title}", "", *_intro(results), "", "## Results", ""]
    lines += markdown_table(table)
    lines += ["", *(f"- {note}" for note in TABLE_NOTES), "", "## Data and settings", ""]
    lines += [f"- {line}" for line in _settings(results)]
    lines += ["", "## Timings (seconds)", ""]
    lines += _markdown_rows(["Stage", "Seconds"], [[k, f"{v:.1f}"] for k, v in results.timings.items()])
    lines += ["", "## Per-question tables (CSV)", "", TABLES_NOTE, ""]
    lines += [f"- {_table_links(run, lambda text, path: f'[{text}]({path})')}" for run in results.runs]
    for figure in results.figures:
        lines += ["", f"### {figure.title}", "", f"![{figure.title}]({figure.file})"]
    lines += ["", f"Configs, package versions and machine details: {RESULTS_FILE}.", ""]
    return "\n".join(lines)


def render_html(results: ComparisonResults, out_dir: Path) -> str:
    """A single self-contained page: the figures are embedded as base64 PNG data."""
    esc = html.escape
    table = results.table
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table.rows)

    def link(text: str, path: str) -> str:
        return f"<a href='{esc(path)}'>{esc(text)}</a>"

    timing_rows = "".join(f"<tr><td>{esc(k)}</td><td>{v:.1f}</td></tr>" for k, v in results.timings.items())
    figures = ""
    for figure in results.figures:
        data = base64.b64encode((out_dir / figure.file).read_bytes()).decode("ascii")
        figures += (
            f"<h3>{esc(figure.title)}</h3><img alt='{esc(figure.title)}' src='data:image/png;base64,{data}'>"
        )
    environment = {"versions": results.versions, "machine": dataclasses.asdict(results.machine)}
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{esc(results.title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{esc(results.title)}</h1>"
        + "".join(f"<p>{esc(line)}</p>" for line in _intro(results))
        + f"<h2>Results</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table><ul>"
        + "".join(f"<li>{esc(note)}</li>" for note in TABLE_NOTES)
        + "</ul><h2>Data and settings</h2><ul>"
        + "".join(f"<li>{esc(line)}</li>" for line in _settings(results))
        + f"</ul><h2>Timings (seconds)</h2><table><tbody>{timing_rows}</tbody></table>"
        + f"<h2>Per-question tables (CSV)</h2><p>{esc(TABLES_NOTE)}</p><ul>"
        + "".join(f"<li>{_table_links(run, link)}</li>" for run in results.runs)
        + "</ul>"
        + figures
        + "<h2>Configuration</h2><pre>"
        + esc(json.dumps(results.config.to_dict(), indent=2))
        + "</pre><h2>Versions and machine</h2><pre>"
        + esc(json.dumps(environment, indent=2))
        + "</pre></body></html>\n"
    )


def _intro(results: ComparisonResults) -> list[str]:
    data, config = results.data, results.config
    seeds = config.seeds
    return [
        f"Dataset {data.dataset}, base model {config.model.name}, encoder {config.model.encoder}; "
        f"{len(seeds)} seed(s) {seeds}"
        + (" — numbers are mean ± sample std over seeds." if len(seeds) > 1 else "."),
        _scored(config.data.score_split, data.sizes["test"]),
        f"Zero-shot: {data.sizes['heldout']} answers from the held-out profile cells {data.heldout_cells}, "
        "whose respondents are excluded from training entirely.",
        *(
            ["Quick run (--quick): a tiny random model on a small sample; the numbers are a smoke test only."]
            if results.quick
            else []
        ),
        *_resume_notes(results),
    ]


def _resume_notes(results: ComparisonResults) -> list[str]:
    """What a resumed run changed on purpose (--resume-changed) or passed over, per method and seed."""
    notes = []
    for run in results.runs:
        for key, (before, now) in run.training.get("changed_on_resume", {}).items():
            notes.append(
                f"{run.method} seed {run.seed}: resumed with {key} changed from {before!r} to {now!r}."
            )
        for problem in run.training.get("skipped_checkpoints", []):
            notes.append(f"{run.method} seed {run.seed}: resumed past a bad checkpoint ({problem}).")
    return notes


def _scored(split: str, size: int) -> str:
    if split == "valid":
        return (
            f"VALIDATION numbers (data.score_split=valid): the test columns score {size} answers from "
            "validation respondents, never trained on; use them to tune, not to report. "
        )
    return f"Test: {size} answers from respondents never seen in training (random split). "


def _settings(results: ComparisonResults) -> list[str]:
    data, train, machine = results.data, results.config.train, results.machine
    steps = f"at most {train.max_steps} optimizer steps" if train.max_steps else f"{train.epochs} epoch(s)"
    return [
        f"Full survey: {data.survey_answers:,} answers from {data.survey_respondents:,} respondents to "
        f"{data.n_questions} questions; sampled, stratified by question (data.n_*):",
        "Answers per split: " + ", ".join(f"{k} {v}" for k, v in data.sizes.items()),
        "Respondents available per split before sampling: "
        + ", ".join(f"{k} {v}" for k, v in data.respondents.items()),
        f"Profile fields: {', '.join(data.group_fields)}; main group: {data.main_group}",
        f"Sequence length: prompts of {data.mean_prompt:.0f} tokens on average, longest "
        f"{data.longest_prompt} (data.max_length {data.max_length}; nothing is truncated)",
        f"Training: {steps}, batch {train.batch_size} x {train.grad_accum} accumulation, "
        f"lr {train.lr}, {train.precision}; scoring in {results.config.eval.precision}",
        f"Machine: {machine.processor}, {machine.cpu_count} CPU cores, {machine.torch_threads} "
        f"torch threads, GPU: {machine.cuda or 'none'}",
    ]


def _table_links(run: MethodRun, link: Callable[[str, str], str]) -> str:
    """A run's label and table files, ``kind`` then ``link(split, path)`` per split."""
    files = "; ".join(
        f"{kind} " + ", ".join(link(split, path) for split, path in paths.items())
        for kind, paths in run.tables.items()
    )
    return f"{run.method} (seed {run.seed}): {files}"


def markdown_table(table: ResultsTable) -> list[str]:
    """The results table as Markdown lines (report.md, and printed at the end of a run)."""
    return _markdown_rows(table.columns, table.rows)


def _markdown_rows(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _table_frame(aggregated: Mapping[str, MethodSummary]) -> pd.DataFrame:
    records = []
    for method, entry in aggregated.items():
        record: dict[str, Any] = {"method": method, "n_seeds": len(entry.seeds)}
        for col in TABLE_COLUMNS:
            stat = entry.stats.get(col.key) or Stat(None, None)
            record[f"{col.key}_mean"], record[f"{col.key}_std"] = stat.mean, stat.std
        records.append(record)
    return pd.DataFrame.from_records(records)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}pre{background:#f6f6f6;padding:1em;"
    "overflow:auto;font-size:12px}"
)
