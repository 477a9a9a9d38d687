"""Load test of ``cuma serve``: N concurrent clients, a fixed number of requests, batching on vs off.

The real small model (SmolLM2-135M-Instruct, fp32) carries a fresh CuMA adapter (preset ``cuma``, the
packaged MiniLM encoder); a fresh adapter adds nothing to the base's output, but every routing
computation runs, so the timings are those of a trained one. The same engine is put behind two
servers on 127.0.0.1, one after the other: micro-batching on (``--max-batch-size``) and off (1).
Each client sends greedy chat requests with its own profile through the official openai client and
waits for the answer before sending the next. Every request must come back answered or refused
(429/503); one that errs or does not come back within ``--budget`` seconds counts as lost, and the
run exits non-zero. Prints requests/s, p50/p95 latency and generated tokens/s per mode.

    python benchmarks/serve_load.py [--clients 8] [--requests 48] [--max-tokens 16] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass, field

import openai
import torch

from cuma.adapter import CuMAConfig, get_cuma_model
from cuma.encoder import DemographicEncoder
from cuma.models import load_base_model
from cuma.serve import Engine, ServeConfig, ServerThread, build_app

HOST = "127.0.0.1"  # loopback only
PROFILES = [
    {"country": "Norway", "age": "45", "religion": "none"},
    {"country": "Nigeria", "age": "23", "religion": "Muslim"},
    {"country": "Brazil", "age": "61", "religion": "Catholic"},
    {"country": "India", "age": "34", "religion": "Hindu"},
    {"country": "Japan", "age": "52", "religion": "Buddhist"},
    {"country": "United States", "age": "29", "religion": "Protestant"},
    {"country": "Egypt", "age": "40", "religion": "Muslim"},
    {"country": "Germany", "age": "70", "religion": "none"},
]
QUESTIONS = [
    "How important is religion in your life? Answer in one sentence.",
    "Should the government spend more on education? Answer in one sentence.",
    "Is it ever justifiable to avoid paying taxes? Answer in one sentence.",
    "How much do you trust people you meet for the first time? Answer in one sentence.",
]


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    tokens: int = 0
    refused: int = 0
    failed: list[str] = field(default_factory=list)


def build_engine() -> Engine:
    encoder = DemographicEncoder()
    base, tokenizer = load_base_model("smollm2-135m-instruct", dtype=torch.float32)
    model = get_cuma_model(base, CuMAConfig.from_preset("cuma", **encoder.adapter_settings()))
    return Engine(model.eval(), tokenizer, encoder, encoder.template, name="smollm2-cuma")


async def client_loop(
    client: openai.AsyncOpenAI, index: int, counter: list[int], total: int, max_tokens: int, out: Outcome
) -> None:
    while counter[0] < total:
        request = counter[0]
        counter[0] += 1
        start = time.perf_counter()
        try:
            answer = await client.chat.completions.create(
                model="smollm2-cuma",
                messages=[{"role": "user", "content": QUESTIONS[request % len(QUESTIONS)]}],
                max_tokens=max_tokens,
                temperature=0,
                extra_body={"profile": PROFILES[(index + request) % len(PROFILES)]},
            )
        except (openai.RateLimitError, openai.InternalServerError) as err:
            if getattr(err, "status_code", None) in (429, 503):
                out.refused += 1
            else:
                out.failed.append(f"request {request}: {err}")
            continue
        except openai.OpenAIError as err:
            out.failed.append(f"request {request}: {type(err).__name__}: {err}")
            continue
        out.latencies.append(time.perf_counter() - start)
        out.tokens += answer.usage.completion_tokens


async def load(url: str, clients: int, total: int, max_tokens: int, budget_s: float) -> tuple[Outcome, float]:
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=budget_s)
    out, counter = Outcome(), [0]
    start = time.perf_counter()
    tasks = [
        asyncio.create_task(client_loop(client, i, counter, total, max_tokens, out)) for i in range(clients)
    ]
    _, pending = await asyncio.wait(tasks, timeout=budget_s)
    for task in pending:
        task.cancel()
    elapsed = time.perf_counter() - start
    answered = len(out.latencies) + out.refused + len(out.failed)
    if answered < total:
        out.failed.append(f"{total - answered} request(s) lost or still hanging after {budget_s:.0f} s")
    await client.close()
    return out, elapsed


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def run_mode(engine: Engine, args: argparse.Namespace, batch_size: int) -> dict[str, object]:
    config = ServeConfig(
        host=HOST,
        port=0,
        max_batch_size=batch_size,
        batch_window_ms=args.window_ms,
        max_queue=args.max_queue,
        max_tokens=args.max_tokens,
        request_timeout_s=args.budget,
    )
    with ServerThread(build_app(engine, config), config) as server:
        asyncio.run(load(server.url, 1, 1, args.max_tokens, args.budget))  # warm-up, not counted
        out, elapsed = asyncio.run(
            load(server.url, args.clients, args.requests, args.max_tokens, args.budget)
        )
        stats = server.server.config.app.state.batcher.stats
    batches = stats.batches - 1
    return {
        "mode": f"batching {'on' if batch_size > 1 else 'off'} (max {batch_size})",
        "answered": len(out.latencies),
        "refused": out.refused,
        "lost": len(out.failed),
        "req/s": len(out.latencies) / elapsed,
        "p50 s": percentile(out.latencies, 50) if out.latencies else float("nan"),
        "p95 s": percentile(out.latencies, 95) if out.latencies else float("nan"),
        "tokens/s": out.tokens / elapsed,
        "rows/batch": (stats.rows - 1) / batches if batches else float("nan"),
        "failures": out.failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=48, help="requests per mode")
    parser.add_argument("--max-tokens", type=int, default=16, help="new tokens per request")
    parser.add_argument("--max-batch-size", type=int, default=8, help="rows per batch with batching on")
    parser.add_argument("--window-ms", type=float, default=20.0, help="micro-batching window")
    parser.add_argument("--max-queue", type=int, default=64, help="waiting requests before 429")
    parser.add_argument(
        "--budget", type=float, default=120.0, help="seconds per mode before a request is lost"
    )
    parser.add_argument("--quick", action="store_true", help="4 clients, 8 requests, 4 tokens")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.requests, args.max_tokens = 4, 8, 4
    engine = build_engine()
    print(
        f"{args.clients} clients, {args.requests} requests per mode, {args.max_tokens} new tokens each, "
        f"greedy, fp32, torch threads {torch.get_num_threads()}"
    )
    rows = [run_mode(engine, args, 1), run_mode(engine, args, args.max_batch_size)]
    columns = ["mode", "answered", "refused", "lost", "req/s", "p50 s", "p95 s", "tokens/s", "rows/batch"]
    widths = [max(len(c), 24 if c == "mode" else 8) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        cells = [f"{row[c]:.2f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        print("  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)))
    failures = [failure for row in rows for failure in row["failures"]]
    for failure in failures:
        print("FAILED:", failure)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
