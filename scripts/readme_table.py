"""Print a comparison's short table for the README from its ``results.json``.

One row per method (the calibration rows only with ``--all``): trainable parameters, log-loss, Brier and
accuracy on the test split with their intervals, the paired difference of log-loss and accuracy against a
baseline method (``*`` where the interval excludes 0), and log-loss and accuracy on the held-out profile
cells. The numbers and their formatting are the report's own (`cuma.compare.results`, `cuma.compare.report`);
this only picks them.

    python scripts/readme_table.py runs/gss-science [--baseline lora] [--all]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cuma.compare.report import format_interval, markdown_table
from cuma.compare.results import RESULTS_FILE, ComparisonResults, ResultsTable
from cuma.metrics.evidence import Difference

CALIBRATION = ("random-draw", "shuffled-truth", "always-first")


def difference(value: Difference | None) -> str:
    """As the report's difference tables write one, without the test's p-value."""
    return format_interval(value, 3) + (" *" if value is not None and value.excludes_zero else "")


def table(results: ComparisonResults, baseline: str, everything: bool) -> str:
    if results.evidence is None:
        raise SystemExit("this report has no intervals (written without evidence)")
    splits = results.evidence.splits
    test, heldout = splits["test"], splits.get("heldout")
    params = {run.method: run.trainable_params for run in results.runs}
    columns = [
        "Method",
        "Trainable params",
        "Log-loss ↓",
        "Brier ↓",
        "Accuracy",
        f"Δ log-loss vs {baseline}",
        f"Δ accuracy vs {baseline}",
        "Zero-shot log-loss ↓",
        "Zero-shot acc.",
    ]
    rows = []
    against = test.differences.get(baseline, {})
    for method, values in test.values.items():
        if method in CALIBRATION and not everything:
            continue
        count = params.get(method)
        shift = against.get(method, {})
        zero_shot = heldout.values.get(method, {}) if heldout is not None else {}
        rows.append(
            [
                method,
                "—" if count is None else f"{count:,}",
                format_interval(values.get("log_loss"), 3),
                format_interval(values.get("brier"), 3),
                format_interval(values.get("accuracy"), 3),
                "—" if method == baseline else difference(shift.get("log_loss")),
                "—" if method == baseline else difference(shift.get("accuracy")),
                format_interval(zero_shot.get("log_loss"), 3),
                format_interval(zero_shot.get("accuracy"), 3),
            ]
        )
    return "\n".join(markdown_table(ResultsTable(columns, rows)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("report", type=Path, help="a report directory (holding results.json)")
    parser.add_argument("--baseline", default="lora", help="the method differences are taken against")
    parser.add_argument("--all", action="store_true", help="also the calibration rows")
    args = parser.parse_args()
    results = ComparisonResults.read(args.report / RESULTS_FILE)
    print(table(results, args.baseline, args.all))


if __name__ == "__main__":
    main()
