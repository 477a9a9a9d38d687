"""Print a comparison's short table for the README from its ``results.json``.

One row per method (the calibration rows only with ``--all``): trainable parameters, log-loss, Brier and
accuracy on the test split with their intervals, the paired difference of log-loss and accuracy against a
baseline method (``*`` where the interval excludes 0), and log-loss and accuracy on the held-out profile
cells. The numbers are the report's own (`cuma.compare.results`); this only picks and formats them.

    python scripts/readme_table.py runs/gss-science [--baseline lora] [--all]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cuma.compare.results import RESULTS_FILE, ComparisonResults
from cuma.metrics.evidence import Difference, Interval

CALIBRATION = ("random-draw", "shuffled-truth", "always-first")


def interval(value: Interval | None) -> str:
    if value is None or value.estimate is None:
        return "—"
    return f"{value.estimate:.3f} [{value.low:.3f}, {value.high:.3f}]"


def difference(value: Difference | None) -> str:
    if value is None or value.estimate is None:
        return "—"
    mark = " *" if value.excludes_zero else ""
    return f"{value.estimate:+.3f} [{value.low:+.3f}, {value.high:+.3f}]{mark}"


def table(results: ComparisonResults, baseline: str, everything: bool) -> str:
    if results.evidence is None:
        raise SystemExit("this report has no intervals (written without evidence)")
    splits = results.evidence.splits
    test, heldout = splits["test"], splits.get("heldout")
    params = {run.method: run.trainable_params for run in results.runs}
    header = (
        f"| Method | Trainable params | Log-loss ↓ | Brier ↓ | Accuracy | Δ log-loss vs {baseline} "
        f"| Δ accuracy vs {baseline} | Zero-shot log-loss ↓ | Zero-shot acc. |"
    )
    lines = [header, "|" + "---|" * 9]
    against = test.differences.get(baseline, {})
    for method, values in test.values.items():
        if method in CALIBRATION and not everything:
            continue
        count = params.get(method)
        shift = against.get(method, {})
        zero_shot = heldout.values.get(method, {}) if heldout is not None else {}
        cells = [
            method,
            "—" if count is None else f"{count:,}",
            interval(values.get("log_loss")),
            interval(values.get("brier")),
            interval(values.get("accuracy")),
            "—" if method == baseline else difference(shift.get("log_loss")),
            "—" if method == baseline else difference(shift.get("accuracy")),
            interval(zero_shot.get("log_loss")),
            interval(zero_shot.get("accuracy")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
