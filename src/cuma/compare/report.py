"""Writes a comparison's report directory from its results: results.json, results.csv, report.md, report.html.

``results`` (what the driver collects, stored verbatim as results.json) holds ``title``, ``created``,
``quick``, ``config``, ``versions``, ``machine``, ``data`` (sizes, lengths, held-out cells), ``timings``,
``runs`` (one entry per method and seed: its resolved ``adapter_config`` and build ``settings``, its
metrics per split), ``aggregate`` (per method: mean and
std over seeds of every number) and ``figures``; each run names its per-question CSVs under ``tables/``
(`cuma.compare.tables`), which report.md links. The table is derived from ``aggregate`` by
:func:`build_table`, so every cell of report.md / report.html / results.csv is a number in results.json.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cuma.atomic import atomic_path


@dataclass(frozen=True)
class Column:
    """A column of the paper-style table; ``key`` is ``split.metric`` or a run field in the aggregate."""

    key: str
    header: str
    digits: int = 3
    spread: bool = True  # show ``± std`` over seeds (not for counts fixed by the config)


REPORT_FILES = ("results.json", "results.csv", "report.md", "report.html")
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


def aggregate(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method, mean and sample std (None for one seed) over seeds of every run number and metric."""
    result: dict[str, dict[str, Any]] = {}
    for method in dict.fromkeys(run["method"] for run in runs):
        mine = [run for run in runs if run["method"] == method]
        values: dict[str, list[float]] = {}
        for run in mine:
            for key, value in _flatten(run).items():
                values.setdefault(key, []).append(value)
        result[method] = {
            "kind": mine[0]["kind"],
            "seeds": [run["seed"] for run in mine],
            "stats": {key: _mean_std(vals) for key, vals in values.items()},
        }
    return result


def build_table(aggregated: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Header and cell strings: ``mean ± std`` over several seeds, ``—`` when undefined."""
    rows = []
    for method, entry in aggregated.items():
        rows.append(
            [
                method,
                *(format_cell(entry["stats"].get(col.key), col.digits, col.spread) for col in TABLE_COLUMNS),
            ]
        )
    return {"columns": ["Method", *(col.header for col in TABLE_COLUMNS)], "rows": rows}


def format_cell(stat: Mapping[str, float | None] | None, digits: int, spread: bool = True) -> str:
    if stat is None or stat["mean"] is None:
        return "—"
    text = f"{stat['mean']:,.{digits}f}"
    if spread and stat.get("std") is not None:
        text += f" ± {stat['std']:,.{digits}f}"
    return text


def write_report(results: dict[str, Any], out_dir: Path) -> Path:
    """Write the four report files into ``out_dir`` (figures must already be there) and return it.

    All four are written to temporary files first and replace the old ones only once every one is
    complete (`cuma.atomic`), so a failure leaves the previous report whole, never half old, half new.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    results["aggregate"] = aggregate(results["runs"])
    results["table"] = build_table(results["aggregate"])
    texts = {
        "results.json": json.dumps(_jsonable(results), indent=2) + "\n",
        "results.csv": _table_frame(results["aggregate"]).to_csv(index=False),
        "report.md": render_markdown(results),
        "report.html": render_html(results, out_dir),
    }
    with contextlib.ExitStack() as stack:
        for name in REPORT_FILES:
            stack.enter_context(atomic_path(out_dir / name)).write_text(texts[name], encoding="utf-8")
    return out_dir


def render_markdown(results: Mapping[str, Any]) -> str:
    table = results["table"]
    lines = [f"# {results['title']}", "", *_intro(results), "", "## Results", ""]
    lines += _markdown_table(table["columns"], table["rows"])
    lines += ["", *(f"- {note}" for note in TABLE_NOTES), "", "## Data and settings", ""]
    lines += [f"- {line}" for line in _settings(results)]
    lines += ["", "## Timings (seconds)", ""]
    lines += _markdown_table(["Stage", "Seconds"], [[k, f"{v:.1f}"] for k, v in results["timings"].items()])
    lines += ["", "## Per-question tables (CSV)", "", TABLES_NOTE, ""]
    lines += [f"- {_table_links(run, lambda text, path: f'[{text}]({path})')}" for run in results["runs"]]
    for figure in results.get("figures", []):
        lines += ["", f"### {figure['title']}", "", f"![{figure['title']}]({figure['file']})"]
    lines += ["", "Configs, package versions and machine details: results.json.", ""]
    return "\n".join(lines)


def render_html(results: Mapping[str, Any], out_dir: Path) -> str:
    """A single self-contained page: the figures are embedded as base64 PNG data."""
    esc = html.escape
    table = results["table"]
    head = "".join(f"<th>{esc(c)}</th>" for c in table["columns"])
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table["rows"])

    def link(text: str, path: str) -> str:
        return f"<a href='{esc(path)}'>{esc(text)}</a>"

    timing_rows = "".join(
        f"<tr><td>{esc(k)}</td><td>{v:.1f}</td></tr>" for k, v in results["timings"].items()
    )
    figures = ""
    for figure in results.get("figures", []):
        data = base64.b64encode((out_dir / figure["file"]).read_bytes()).decode("ascii")
        figures += (
            f"<h3>{esc(figure['title'])}</h3>"
            f"<img alt='{esc(figure['title'])}' src='data:image/png;base64,{data}'>"
        )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{esc(results['title'])}</title><style>{_CSS}</style></head><body>"
        f"<h1>{esc(results['title'])}</h1>"
        + "".join(f"<p>{esc(line)}</p>" for line in _intro(results))
        + f"<h2>Results</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table><ul>"
        + "".join(f"<li>{esc(note)}</li>" for note in TABLE_NOTES)
        + "</ul><h2>Data and settings</h2><ul>"
        + "".join(f"<li>{esc(line)}</li>" for line in _settings(results))
        + f"</ul><h2>Timings (seconds)</h2><table><tbody>{timing_rows}</tbody></table>"
        + f"<h2>Per-question tables (CSV)</h2><p>{esc(TABLES_NOTE)}</p><ul>"
        + "".join(f"<li>{_table_links(run, link)}</li>" for run in results["runs"])
        + "</ul>"
        + figures
        + "<h2>Configuration</h2><pre>"
        + esc(json.dumps(_jsonable(results["config"]), indent=2))
        + "</pre><h2>Versions and machine</h2><pre>"
        + esc(
            json.dumps(_jsonable({"versions": results["versions"], "machine": results["machine"]}), indent=2)
        )
        + "</pre></body></html>\n"
    )


def _intro(results: Mapping[str, Any]) -> list[str]:
    data = results["data"]
    seeds = results["config"]["seeds"]
    return [
        f"Dataset {data['dataset']}, base model {results['config']['model']['name']}, encoder "
        f"{results['config']['model']['encoder']}; {len(seeds)} seed(s) {seeds}"
        + (" — numbers are mean ± sample std over seeds." if len(seeds) > 1 else "."),
        _scored(results["config"]["data"]["score_split"], data["sizes"]["test"]),
        f"Zero-shot: {data['sizes']['heldout']} answers from the held-out profile cells "
        f"{data['heldout_cells']}, "
        "whose respondents are excluded from training entirely.",
        *(
            ["Quick run (--quick): a tiny random model on a small sample; the numbers are a smoke test only."]
            if results.get("quick")
            else []
        ),
    ]


def _scored(split: str, size: int) -> str:
    if split == "valid":
        return (
            f"VALIDATION numbers (data.score_split=valid): the test columns score {size} answers from "
            "validation respondents, never trained on; use them to tune, not to report. "
        )
    return f"Test: {size} answers from respondents never seen in training (random split). "


def _settings(results: Mapping[str, Any]) -> list[str]:
    data, train, machine = results["data"], results["config"]["train"], results["machine"]
    steps = (
        f"at most {train['max_steps']} optimizer steps"
        if train["max_steps"]
        else f"{train['epochs']} epoch(s)"
    )
    return [
        f"Full survey: {data['survey_answers']:,} answers from {data['survey_respondents']:,} respondents to "
        f"{data['n_questions']} questions; sampled, stratified by question (data.n_*):",
        "Answers per split: " + ", ".join(f"{k} {v}" for k, v in data["sizes"].items()),
        "Respondents available per split before sampling: "
        + ", ".join(f"{k} {v}" for k, v in data["respondents"].items()),
        f"Profile fields: {', '.join(data['group_fields'])}; main group: {data['main_group']}",
        f"Sequence length: prompts of {data['mean_prompt']:.0f} tokens on average, longest "
        f"{data['longest_prompt']} (data.max_length {data['max_length']}; nothing is truncated)",
        f"Training: {steps}, batch {train['batch_size']} x {train['grad_accum']} accumulation, "
        f"lr {train['lr']}, {train['precision']}; scoring in {results['config']['eval']['precision']}",
        f"Machine: {machine['processor']}, {machine['cpu_count']} CPU cores, {machine['torch_threads']} "
        f"torch threads, GPU: {machine['cuda'] or 'none'}",
    ]


def _table_links(run: Mapping[str, Any], link: Callable[[str, str], str]) -> str:
    """A run's label and table files, ``kind`` then ``link(split, path)`` per split."""
    files = "; ".join(
        f"{kind} " + ", ".join(link(split, path) for split, path in paths.items())
        for kind, paths in run["tables"].items()
    )
    return f"{run['method']} (seed {run['seed']}): {files}"


def markdown_table(results_json: Path) -> list[str]:
    """The results table of a written report, as Markdown lines (for printing at the end of a run)."""
    table = json.loads(results_json.read_text())["table"]
    return _markdown_table(table["columns"], table["rows"])


def _markdown_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _table_frame(aggregated: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    records = []
    for method, entry in aggregated.items():
        record: dict[str, Any] = {"method": method, "n_seeds": len(entry["seeds"])}
        for col in TABLE_COLUMNS:
            stat = entry["stats"].get(col.key) or {"mean": None, "std": None}
            record[f"{col.key}_mean"], record[f"{col.key}_std"] = stat["mean"], stat["std"]
        records.append(record)
    return pd.DataFrame.from_records(records)


def _flatten(run: Mapping[str, Any]) -> dict[str, float | None]:
    flat = {
        key: run.get(key) for key in ("trainable_params", "trainable_pct", "train_seconds", "eval_seconds")
    }
    for split, metrics in run["metrics"].items():
        flat |= {f"{split}.{key}": value for key, value in metrics.items()}
    return {key: value for key, value in flat.items() if value is None or isinstance(value, int | float)}


def _mean_std(values: Sequence[float | None]) -> dict[str, float | None]:
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(finite)), "std": float(np.std(finite, ddof=1)) if len(finite) > 1 else None}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse;font-size:13px}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}pre{background:#f6f6f6;padding:1em;"
    "overflow:auto;font-size:12px}"
)
