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
from cuma.data.experiment import SPLITS
from cuma.metrics.evidence import Difference, Evidence, Interval, NoiseFloor


@dataclass(frozen=True)
class Column:
    """A column of the paper-style table.

    ``key`` is ``split.metric`` or a run field in the aggregate; with ``gain`` set, the cell is the
    metric's gain over that reference (`cuma.metrics.evidence.GAIN_REFERENCES`), known only from the
    evidence.
    """

    key: str
    header: str
    digits: int = 3
    spread: bool = True  # show ``± std`` over seeds (not for counts fixed by the config)
    gain: str | None = None

    @property
    def name(self) -> str:
        """The column's name in results.csv."""
        return f"{self.key}_gain_{self.gain}" if self.gain else self.key


REPORT_FILES = (RESULTS_FILE, "results.csv", "report.md", "report.html")
"""The files `write_report` writes; results.json marks a directory as holding a finished report."""

TABLE_COLUMNS = (
    Column("trainable_params", "Trainable params", 0, spread=False),
    Column("trainable_pct", "% of base", 3, spread=False),
    Column("test.log_loss", "Log-loss ↓"),
    Column("test.brier", "Brier ↓"),
    Column("test.accuracy", "Accuracy ↑ (argmax)"),
    Column("test.log_loss", "Log-loss gain vs majority ↑", gain="majority"),
    Column("test.log_loss", "Log-loss gain vs cell ↑", gain="cell-majority"),
    Column("test.brier", "Brier gain vs majority ↑", gain="majority"),
    Column("test.brier", "Brier gain vs cell ↑", gain="cell-majority"),
    Column("test.accuracy", "Accuracy gain vs majority ↑", gain="majority"),
    Column("test.accuracy", "Accuracy gain vs cell ↑", gain="cell-majority"),
    Column("test.macro_f1", "Macro-F1 ↑ (argmax)"),
    Column("test.wvb_argmax_emd_mean", "EMD mean ↓ (argmax)"),
    Column("test.wvb_argmax_emd_auc_norm", "EMD AUC ↑ (argmax, 0–1)"),
    Column("test.prob_emd_mean", "EMD mean ↓ (prob)"),
    Column("test.sigma_inequity", "σ-inequity ↓ (argmax)"),
    Column("test.collapse_rate", "Collapse rate ↓ (argmax)"),
    Column("test.prob_js_group_mean", "Group JS ↓ (prob)"),
    Column("heldout.log_loss", "Zero-shot log-loss ↓ (held-out profiles)"),
    Column("heldout.accuracy", "Zero-shot accuracy ↑ (argmax)"),
    Column("heldout.wvb_argmax_emd_mean", "Zero-shot EMD ↓ (argmax)"),
    Column("gradient_cosine", "Gradient cosine between groups (training answers)"),
)

DIFFERENCE_COLUMNS = (
    ("log_loss", "Δ log-loss", 3),
    ("brier", "Δ Brier", 3),
    ("accuracy", "Δ accuracy", 3),
    ("macro_f1", "Δ macro-F1", 3),
    ("wvb_argmax_emd_mean", "Δ EMD (argmax)", 3),
    ("wvb_argmax_emd_auc_norm", "Δ EMD AUC", 3),
    ("prob_emd_mean", "Δ EMD (prob)", 3),
    ("sigma_inequity", "Δ σ-inequity", 3),
    ("collapse_rate", "Δ collapse rate", 3),
    ("prob_js_group_mean", "Δ group JS", 3),
)
"""The metrics of the paired-difference tables (every `cuma.metrics.totals.REPLICATED_METRICS` key)."""

FLOOR_ROW = "noise floor (group truth)"
"""The table row of the noise floors (`cuma.metrics.noise_floor`)."""

TABLE_NOTES = (
    "Gradient cosine: mean off-diagonal cosine between the main group's per-group gradients of the answer "
    "loss in the trained adapter's weights, on training answers (first seed; cuma.evaluation.interference): "
    "negative means the groups pull the shared weights apart (the paper's mean collapse); the figure shows "
    "the matrix, and per expert for a mixture.",
    "Log-loss: mean of −ln p(the respondent's answer), p clipped at 2.2e-16 as scikit-learn does; Brier: "
    "mean over answers of the sum over options of (p − 1[answer])², 0–2 (the multi-class convention; half "
    "of it is the binary one); both are proper scores of each person's own answer and lead the table.",
    "Gains over the references (positive = better): reference − method for log-loss and Brier, method − "
    "reference for accuracy; majority = the question's training answer distribution, cell = the training "
    "answer distribution of the respondent's profile cell (the cell-majority reference's probabilities).",
    "Calibration rows random-draw (an answer drawn from the question's training distribution), "
    "shuffled-truth (the true answers permuted among the question's respondents) and always-first (the "
    "first option) know nothing about the person: a metric on which they look good rewards matching the "
    "marginal answer distribution, not predicting the respondent. They put probability 1 on one answer, "
    "so their log-loss is ≈ 36 per miss.",
    "argmax: from each respondent's most probable option; prob: from the option probabilities.",
    "EMD: WorldValuesBench's per-question 1-D Wasserstein distance between true and argmax answers on "
    "[0, 1]; AUC: area under the share of questions with EMD ≤ t for t = 0…0.6, divided by 0.6. "
    "EMD (prob): per question, between the mean predicted distribution and the human one.",
    "σ-inequity: mean over profile fields of the std of subgroup accuracies (groups of ≥ 5 answers).",
    "Collapse rate: share of questions where every respondent gets the same answer.",
    "Group JS: mean over (question, group) of the Jensen–Shannon distance between the group's mean "
    "predicted distribution and its human answer distribution.",
)
EVIDENCE_NOTES = (
    "[low, high]: paired bootstrap interval over respondents (each resample keeps a respondent's answers "
    "together; the same resamples for every method). With several training seeds or data seeds the "
    "replicates of every (seed, data seed) run are pooled with equal weight, so an interval holds both the "
    "respondent sampling spread and the spread between runs (cuma/metrics/evidence.py).",
    "* the interval of a gain or difference excludes 0.",
    f"{FLOOR_ROW}: group JS and σ-inequity of a predictor that knows each group's true (full-survey) answer "
    "distribution, simulated at the test split's group sizes (mean [central interval] over simulated "
    "samples); † marks a value within it (no larger than the floor's upper end): indistinguishable from "
    "sampling noise.",
    "The distribution metrics (EMD, group JS, collapse, σ-inequity) are distances between small "
    "histograms, which resampling makes noisier, so their bootstrap intervals can lie above the estimate; "
    "read them with the noise floor and the calibration rows.",
)
DIFFERENCES_NOTE = (
    "Each method minus the baseline, paired (same respondents, same resamples): Δ [interval], * when the "
    "interval excludes 0; p: McNemar's mid-p for accuracy (answers as pairs) and a sign-flip permutation "
    "test over respondents for log-loss, the largest over runs when there are several."
)
TABLES_NOTE = (
    "distribution: per question and group (population rows have field and group '(all)'), EMD, JS and TV "
    "of the mean predicted (prob) and the argmax distribution against the human one; entropy: per question, "
    "entropy in bits of the argmax answers, the mean predicted distribution and the human answers."
)


def build_table(aggregated: Mapping[str, MethodSummary], evidence: Evidence | None = None) -> ResultsTable:
    """Header and cell strings; ``—`` when undefined.

    With ``evidence``, a metric cell is ``estimate [low, high]`` (marked as `EVIDENCE_NOTES` says) and a
    row of noise floors follows the methods; without it, ``mean ± std`` over several seeds.
    """
    rows = [
        [method, *(_cell(col, method, entry, evidence) for col in TABLE_COLUMNS)]
        for method, entry in aggregated.items()
    ]
    if evidence is not None and any(split.floors for split in evidence.splits.values()):
        rows.append([FLOOR_ROW, *(_floor_cell(col, evidence) for col in TABLE_COLUMNS)])
    return ResultsTable(["Method", *(col.header for col in TABLE_COLUMNS)], rows)


def results_table(runs: Sequence[MethodRun], evidence: Evidence | None = None) -> ResultsTable:
    """The table of ``runs``: `build_table` of their `aggregate` over seeds (and of the evidence)."""
    return build_table(aggregate(runs), evidence)


def difference_tables(evidence: Evidence) -> list[tuple[str, ResultsTable]]:
    """Per split and baseline, every method's paired difference (method − baseline) in every metric.

    A cell is ``Δ [low, high]``, ``*`` when the interval excludes 0, and the test's p-value for accuracy
    (McNemar mid-p) and log-loss (sign-flip permutation).
    """
    tables = []
    for split, part in evidence.splits.items():
        for baseline, methods in part.differences.items():
            rows = [
                [method, *(_difference_cell(diffs[key], digits) for key, _, digits in DIFFERENCE_COLUMNS)]
                for method, diffs in methods.items()
            ]
            title = f"{SPLITS[split]}: method − {baseline}"
            tables.append((title, ResultsTable(["Method", *(h for _, h, _ in DIFFERENCE_COLUMNS)], rows)))
    return tables


def format_cell(stat: Stat | None, digits: int, spread: bool = True) -> str:
    if stat is None or stat.mean is None:
        return "—"
    text = f"{stat.mean:,.{digits}f}"
    if spread and stat.std is not None:
        text += f" ± {stat.std:,.{digits}f}"
    return text


def format_interval(value: Interval | Difference | NoiseFloor | None, digits: int) -> str:
    """``estimate [low, high]`` (``—`` when undefined; the estimate alone when the interval is)."""
    estimate = value.mean if isinstance(value, NoiseFloor) else value.estimate if value else None
    if estimate is None:
        return "—"
    text = f"{estimate:,.{digits}f}"
    if value.low is not None and value.high is not None:
        text += f" [{value.low:,.{digits}f}, {value.high:,.{digits}f}]"
    return text


def _cell(col: Column, method: str, entry: MethodSummary, evidence: Evidence | None) -> str:
    split, _, metric = col.key.rpartition(".")
    part = evidence.splits.get(split) if evidence is not None and split else None
    if col.gain:
        gain = part.gains.get(col.gain, {}).get(method, {}).get(metric) if part else None
        return format_interval(gain, col.digits) + (" *" if gain and gain.excludes_zero else "")
    value = part.values.get(method, {}).get(metric) if part else None
    if value is None:
        return format_cell(entry.stats.get(col.key), col.digits, col.spread)
    floor = part.floors.get(metric)
    within = floor is not None and floor.high is not None and value.estimate is not None
    return format_interval(value, col.digits) + (" †" if within and value.estimate <= floor.high else "")


def _floor_cell(col: Column, evidence: Evidence) -> str:
    split, _, metric = col.key.rpartition(".")
    part = evidence.splits.get(split)
    floor = part.floors.get(metric) if part and not col.gain else None
    return format_interval(floor, col.digits)


def _difference_cell(difference: Difference, digits: int) -> str:
    text = format_interval(difference, digits) + (" *" if difference.excludes_zero else "")
    return text + (f" (p={difference.p_value:.2g})" if difference.p_value is not None else "")


def write_report(results: ComparisonResults, out_dir: Path) -> Path:
    """Write the four report files into ``out_dir`` (figures must already be there) and return it.

    All four are written to temporary files first and replace the old ones only once every one is
    complete (`cuma.atomic`), so a failure leaves the previous report whole, never half old, half new.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {
        RESULTS_FILE: results.to_json(),
        "results.csv": _table_frame(results.aggregate(), results.evidence).to_csv(index=False),
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
    lines += ["", *(f"- {note}" for note in _notes(results)), ""]
    if results.evidence is not None:
        lines += ["## Paired differences", "", DIFFERENCES_NOTE]
        for title, differences in difference_tables(results.evidence):
            lines += ["", f"### {title}", "", *markdown_table(differences)]
        lines += [""]
    lines += ["## Data and settings", ""]
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
        + f"<h2>Results</h2>{_html_table(results.table)}<ul>"
        + "".join(f"<li>{esc(note)}</li>" for note in _notes(results))
        + "</ul>"
        + _html_differences(results.evidence)
        + "<h2>Data and settings</h2><ul>"
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


def _notes(results: ComparisonResults) -> tuple[str, ...]:
    return TABLE_NOTES + (EVIDENCE_NOTES if results.evidence is not None else ())


def _html_table(table: ResultsTable) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_differences(evidence: Evidence | None) -> str:
    if evidence is None:
        return ""
    tables = "".join(
        f"<h3>{html.escape(title)}</h3>{_html_table(table)}" for title, table in difference_tables(evidence)
    )
    return f"<h2>Paired differences</h2><p>{html.escape(DIFFERENCES_NOTE)}</p>{tables}"


def _intervals(evidence: Evidence) -> str:
    runs = len(evidence.runs)
    pooled = f", pooled over {runs} (training seed, data seed) runs" if runs > 1 else ""
    sizes = "; ".join(
        f"{SPLITS[split]}: {part.respondents} respondents, {part.answers} answers"
        for split, part in evidence.splits.items()
    )
    return (
        f"Intervals: {evidence.confidence:.0%} paired bootstrap over respondents, {evidence.resamples} "
        f"resamples (seed {evidence.seed}){pooled}; {sizes}."
    )


def _intro(results: ComparisonResults) -> list[str]:
    data, config = results.data, results.config
    seeds = config.seeds
    return [
        f"Dataset {data.dataset}, base model {config.model.name}, encoder {config.model.encoder}; "
        f"{len(seeds)} seed(s) {seeds}" + _over_seeds(len(seeds), results.evidence is not None),
        _scored(config.data.score_split, data.sizes["test"]),
        f"Zero-shot: {data.sizes['heldout']} answers from the held-out profile cells {data.heldout_cells}, "
        "whose respondents are excluded from training entirely.",
        *(
            ["Quick run (--quick): a tiny random model on a small sample; the numbers are a smoke test only."]
            if results.quick
            else []
        ),
        *([_intervals(results.evidence)] if results.evidence is not None else []),
        *_resume_notes(results),
    ]


def _over_seeds(seeds: int, intervals: bool) -> str:
    if seeds == 1:
        return "."
    if intervals:
        return " — numbers are means over seeds, with intervals that hold the spread between seeds."
    return " — numbers are mean ± sample std over seeds."


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


def _table_frame(aggregated: Mapping[str, MethodSummary], evidence: Evidence | None) -> pd.DataFrame:
    """results.csv: per method the table's numbers (mean and std over seeds, and with the evidence each
    interval) and every paired difference; the noise floors are a row of their own."""
    records = []
    for method, entry in aggregated.items():
        record: dict[str, Any] = {"method": method, "n_seeds": len(entry.seeds)}
        for col in TABLE_COLUMNS:
            if col.gain:
                continue
            stat = entry.stats.get(col.key) or Stat(None, None)
            record[f"{col.key}_mean"], record[f"{col.key}_std"] = stat.mean, stat.std
        if evidence is not None:
            record |= _evidence_numbers(method, evidence)
        records.append(record)
    if evidence is not None:
        floors = {
            f"{split}.{metric}_{part}": getattr(floor, part)
            for split, entry in evidence.splits.items()
            for metric, floor in entry.floors.items()
            for part in ("mean", "low", "high")
        }
        if floors:
            records.append({"method": FLOOR_ROW, **floors})
    return pd.DataFrame.from_records(records)


def _evidence_numbers(method: str, evidence: Evidence) -> dict[str, float | bool | None]:
    numbers: dict[str, float | bool | None] = {}
    for split, part in evidence.splits.items():
        for metric, value in part.values.get(method, {}).items():
            numbers |= {f"{split}.{metric}_{k}": getattr(value, k) for k in ("estimate", "low", "high")}
        for kind, groups in (("gain", part.gains), ("minus", part.differences)):
            for other, methods in groups.items():
                for metric, diff in methods.get(method, {}).items():
                    name = f"{split}.{metric}_{kind}_{other}"
                    numbers |= {f"{name}_{k}": getattr(diff, k) for k in ("estimate", "low", "high")}
                    numbers[f"{name}_excludes_zero"] = diff.excludes_zero
                    if diff.p_value is not None:
                        numbers[f"{name}_p"] = diff.p_value
    return numbers


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}pre{background:#f6f6f6;padding:1em;"
    "overflow:auto;font-size:12px}"
)
