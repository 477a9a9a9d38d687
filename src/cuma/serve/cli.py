"""``cuma serve``: an OpenAI-compatible HTTP server for a CuMA adapter (or a bare base model).

    cuma serve runs/train/cuma-seed0/checkpoint-final
    cuma serve runs/adapter --base smollm2-135m-instruct --port 8080
    cuma serve --base smollm2-135m-instruct
    cuma serve --quick          # a tiny random adapter: the server and the page in seconds

Each request carries its speaker's profile in the body (``extra_body={"profile": {...}}`` with the
official client), and concurrent requests are generated together, one profile row each.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

CLIENT_EXAMPLE = """\
client (pip install openai), three lines:
  from openai import OpenAI
  client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
  print(client.chat.completions.create(model="MODEL", messages=[{"role": "user", "content": "Is religion important to you?"}], extra_body={"profile": {"country": "Norway", "age_group": "25-34"}}).choices[0].message.content)

MODEL is the adapter folder's name (or --name; see GET /v1/models). The page at http://127.0.0.1:8000/
asks one question as several profiles side by side.
"""  # noqa: E501  (the third client line is one line on purpose: it is meant to be pasted)

CONFIG_OPTIONS = (
    ("--host", "host", str, "address to listen on"),
    ("--port", "port", int, "TCP port"),
    ("--max-batch-size", "max_batch_size", int, "most rows generated together; 1 turns micro-batching off"),
    ("--batch-window-ms", "batch_window_ms", float, "how long a request waits for companions"),
    ("--max-queue", "max_queue", int, "waiting requests before answering 429"),
    ("--request-timeout", "request_timeout_s", float, "seconds per request, queueing included"),
    ("--max-tokens", "max_tokens", int, "most new tokens a request may ask for"),
)
"""The options that set a `ServeConfig` field: flag, field, type and help; the default is the field's."""


def configure(parser: argparse.ArgumentParser) -> None:
    from cuma.serve.config import ServeConfig

    defaults = ServeConfig()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = CLIENT_EXAMPLE
    parser.add_argument("adapter_dir", nargs="?", type=Path, help="saved adapter folder (omit with --base)")
    parser.add_argument("--base", help="base model: alias, local folder or hub id (default: the adapter's)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="serve a tiny random CuMA adapter (cuma.serve.quick) instead of a saved one",
    )
    parser.add_argument("--name", help="model id clients send (default: the adapter folder's name or --base)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", help="weight dtype such as bfloat16 (default: the checkpoint's)")
    for flag, name, kind, text in CONFIG_OPTIONS:
        parser.add_argument(
            flag, dest=name, type=kind, default=getattr(defaults, name), help=f"{text} (default: %(default)s)"
        )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> None:
    import torch

    from cuma.serve.app import build_app
    from cuma.serve.config import ServeConfig
    from cuma.serve.engine import Engine
    from cuma.serve.server import run_server

    if args.quick and (args.adapter_dir is not None or args.base):
        raise SystemExit("cuma serve: --quick serves its own tiny model; give no adapter folder or --base")
    if not args.quick and args.adapter_dir is None and args.base is None:
        raise SystemExit("cuma serve: give an adapter folder, or --base MODEL to serve a bare base model")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = ServeConfig(**{name: getattr(args, name) for _, name, _, _ in CONFIG_OPTIONS})
    except ValueError as err:
        raise SystemExit(f"cuma serve: {err}") from None
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.quick:
        from cuma.serve.quick import quick_engine

        engine = quick_engine(name=args.name or "cuma-quick")
    elif args.adapter_dir is not None:
        engine = Engine.from_adapter_dir(
            args.adapter_dir, args.base, name=args.name, dtype=args.dtype, device=device
        )
    else:
        engine = Engine.from_base(args.base, name=args.name, dtype=args.dtype, device=device)
    print(f"serving {engine.name!r} on http://{config.host}:{config.port} (page at /, API at /v1)")
    run_server(build_app(engine, config), config)
