"""The `cuma` command line: each sub-command lives in its own module and is imported on use."""

from __future__ import annotations

import argparse
from importlib import import_module

# sub-command -> (module with `configure(parser)`, one-line help)
COMMANDS = {
    "compare": ("cuma.compare.cli", "train and evaluate methods on a survey and write a comparison report"),
    "data": ("cuma.data.cli", "list, show and export the survey and preference datasets"),
    "demo": ("cuma.demo", "build a real model with a CuMA adapter and show its parameters and routing"),
    "train": (
        "cuma.train.cli",
        "fine-tune one method (cuma, lora, ...) on a survey, with checkpoints and --resume",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cuma", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        import_module(module).configure(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)
