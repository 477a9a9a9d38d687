"""The `cuma` command line: each sub-command lives in its own module and is imported on use.

A user error (a bad config value, bad data, a missing file or optional extra, a diverged run) ends the
command with one line on stderr, ``cuma: error: <message>``, and exit status 2, as argparse does for a
bad option; ``cuma --debug`` or ``CUMA_DEBUG=1`` adds its traceback. Any other exception is a bug in cuma:
its traceback and a request for a report, exit status 1. Ctrl-C ends with ``cuma: interrupted``, status 130.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from importlib import import_module

from cuma.errors import CumaError

# sub-command -> (module with `configure(parser)`, one-line help)
COMMANDS = {
    "compare": (
        "cuma.compare.cli",
        "train and evaluate methods on a survey or a preference dataset and write a comparison report",
    ),
    "data": ("cuma.data.cli", "list, show and export the survey and preference datasets"),
    "demo": ("cuma.demo", "build a real model with a CuMA adapter and show its parameters and routing"),
    "export": ("cuma.export", "write a saved adapter as plain PEFT LoRA folders, one per profile"),
    "interference": (
        "cuma.evaluation.cli",
        "per-group answer-loss gradient cosines of an adapter (the paper's cultural sparsity)",
    ),
    "serve": (
        "cuma.serve.cli",
        "an OpenAI-compatible server: each request answered with its speaker's profile",
    ),
    "sweep": (
        "cuma.compare.sweep",
        "choose each trained method's learning rate on validation respondents, then score test once",
    ),
    "train": (
        "cuma.train.cli",
        "fine-tune one method (cuma, lora, ...) on a survey, with checkpoints and --resume",
    ),
}

USER_ERRORS = (CumaError, ValueError, OSError, ModuleNotFoundError, FloatingPointError)
"""Exceptions whose message tells the user what to fix: bad input (`cuma.errors`, ``ValueError``), a file
that is missing, exists, is not permitted or does not fit on the disk (``OSError``), an optional extra
that is not installed (``ModuleNotFoundError``), a run whose loss stopped being finite (the trainer's
``FloatingPointError``)."""

BUG_REPORT = "cuma: internal error (a bug in cuma): please report it with the command and the traceback above"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cuma", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of user errors too (or set CUMA_DEBUG=1)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        import_module(module).configure(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("CUMA_DEBUG", "") not in ("", "0")
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("cuma: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except USER_ERRORS as err:
        if debug:
            traceback.print_exc()
        print(f"cuma: error: {one_line(err)}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception:
        traceback.print_exc()
        print(BUG_REPORT, file=sys.stderr)
        raise SystemExit(1) from None


def one_line(err: BaseException) -> str:
    """The error's message on one line (a YAML parser's excerpt spans several), or its type's name."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return "; ".join(lines) or type(err).__name__
