"""Optimizer-step time of the real trainer on SmolLM2-135M-Instruct: CuMA vs dense LoRA, fp32 vs bf16.

    python benchmarks/train_step.py [--steps 8] [--batch 16] [--tokens 80]

Random token batches of the given length with a one-token answer and a random 384-d profile
embedding; the first two steps are warm-up and excluded. Prints the median seconds per step.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import time

import torch
from accelerate.state import AcceleratorState

from cuma.config import ExperimentConfig, TrainConfig
from cuma.methods import build_method
from cuma.models import load_base_model
from cuma.quick import RandomProfileEncoder
from cuma.train import train

ENCODER_DIM = 384  # all-MiniLM-L6-v2


def rows(n: int, tokens: int, vocab: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(10, vocab, (tokens,), generator=g)
        labels = torch.full((tokens,), -100)
        labels[-1] = ids[-1]
        out.append({"input_ids": ids, "labels": labels, "embed": torch.randn(ENCODER_DIM, generator=g)})
    return out


def collate(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    ids = torch.stack([r["input_ids"] for r in batch])
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": torch.stack([r["labels"] for r in batch]),
        "demographic_embeds": torch.stack([r["embed"] for r in batch]),
    }


def time_steps(method: str, precision: str, args: argparse.Namespace) -> float:
    AcceleratorState._reset_state(reset_partial_state=True)
    base, _ = load_base_model("smollm2-135m-instruct")
    train_config = TrainConfig(
        max_steps=args.steps, batch_size=args.batch, precision=precision, report_to=[], lr=1e-4
    )
    prepared = build_method(
        method, base, ExperimentConfig(train=train_config), encoder=RandomProfileEncoder(ENCODER_DIM)
    )
    stamps = [time.perf_counter()]
    data = rows(args.steps * args.batch, args.tokens, base.config.vocab_size)
    with tempfile.TemporaryDirectory() as out:
        train(
            prepared, data, collate, train_config, out, on_step=lambda *_: stamps.append(time.perf_counter())
        )
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    return statistics.median(steps[2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=80)
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}, batch {args.batch} x {args.tokens} tokens")
    for precision in ("fp32", "bf16"):
        for method in ("lora", "cuma"):
            seconds = time_steps(method, precision, args)
            rate = args.batch * args.tokens / seconds
            print(f"{method:5s} {precision}: {seconds:.2f} s/step ({rate:.0f} tok/s)")


if __name__ == "__main__":
    main()
