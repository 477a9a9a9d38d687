"""``cuma compare``: train and evaluate a list of methods on one survey and write a report directory.

Without ``--config`` it runs the built-in main job (``cuma/configs/compare-default.yaml``): SmolLM2-135M-
Instruct with the MiniLM encoder on gss-spending-2018, sized to finish within 20 minutes on 2 CPU cores.
Overrides follow the options as dotted ``section.field=value`` pairs, e.g. ``train.max_steps=20``.
"""

from __future__ import annotations

import argparse
from itertools import takewhile
from pathlib import Path

from cuma.train.cli import add_run_arguments, load_config

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "compare-default.yaml"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help=f"experiment YAML (default: {DEFAULT_CONFIG.name}, the main job)"
    )
    add_run_arguments(
        parser, "same pipeline on a tiny random model and a small sample, into <output_dir>-quick (seconds)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="move a previous report in output_dir aside to <output_dir>.old-<timestamp> first",
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    config = load_config(args.config or DEFAULT_CONFIG, args.overrides, quick=args.quick)
    # The comparison's modules load torch and friends (seconds): only once the config is known good.
    from cuma.compare.run import run_comparison
    from cuma.processes import log_from_main_process

    main_process = log_from_main_process()
    out = run_comparison(
        config,
        quick=args.quick,
        resume=args.resume,
        overwrite=args.overwrite,
        resume_changed=args.resume_changed,
    )
    if main_process:
        print_report(out)


def print_report(out: Path) -> None:
    """The results table of the report in ``out``, then where the report is."""
    lines = (out / "report.md").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    print("\n".join(takewhile(lambda line: line.startswith("|"), lines[start:])))
    print(f"\nreport: {out / 'report.md'} and {out / 'report.html'}")
