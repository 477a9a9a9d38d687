"""Scored prompts/s and trained tokens/s of base, LoRA and CuMA on SmolLM2-135M-Instruct, side by side, each
as a share of this machine's measured fp32 matmul peak.

    python benchmarks/throughput.py [--threads 2] [--prompts 64] [--steps 3] [--repeats 3] [--plain] [--quick]

Scoring reads the main job's test prompts (``cuma/configs/compare-default.yaml``; whole respondents drawn
at random until ``--prompts``, so prompts per respondent are as in the job), in eval precision ``auto``,
twice: plainly (one pass per prompt, the scorer before prefix reuse) and on reused prompt prefixes
(the default); ``--plain`` measures only the plain one. Training runs ``--steps`` SFT optimizer steps (one
warm-up step more, not timed) on the job's training prompts in train precision ``auto``, in a plain
seeded shuffle and length-grouped (the default); base has nothing to train.

Model FLOPs: 2 x the non-embedding parameters per prompt token plus the vocabulary projection where it
is computed (scoring: once per prompt); training 6 x (non-embedding parameters + projection) per token
(the usual estimate; a frozen base needs no weight gradients, so adapters do nearer 4 x). Training in
bf16 (``auto`` on a CPU with native bf16) can pass the fp32 peak; the bf16 peak is printed beside it.
Counted tokens are real (non-pad) prompt tokens, so a mode that computes fewer (less padding, a reused
prefix) shows as more throughput: the share of peak is useful work per second over the matmul floor.
``--quick`` uses a tiny random model for a check of the script itself.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cuma.config import ExperimentConfig, TrainConfig
from cuma.data.collate import SFTCollator
from cuma.data.embeddings import attach_embeddings
from cuma.data.experiment import prepare_data
from cuma.evaluation.scoring import SCORING_ATTR, score_examples
from cuma.methods import build_method
from cuma.methods.registry import persona_in_prompt
from cuma.models import load_base_model
from cuma.precision import bf16_support, resolve_precision
from cuma.quick import RandomProfileEncoder
from cuma.tiny import tiny_model, tiny_tokenizer
from cuma.train.data import make_loader
from cuma.train.objectives import SFT

MAIN_JOB = Path(__file__).resolve().parents[1] / "src" / "cuma" / "configs" / "compare-default.yaml"
METHODS = ("base", "lora", "cuma")
ENCODER_DIM = 384  # all-MiniLM-L6-v2


def machine(threads: int) -> str:
    """The CPU's model name, torch's capability, whether bf16 is native, threads and load."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line)
    except (OSError, subprocess.CalledProcessError, StopIteration):
        name = "unknown CPU"
    support = bf16_support("cpu")
    return (
        f"{name}, {os.cpu_count()} CPUs, torch {torch.__version__} capability "
        f"{torch.backends.cpu.get_cpu_capability()}, bf16 {'native' if support.native else 'emulated'} "
        f"({support.evidence}), {threads} threads"
    )


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def matmul_peak(size: int, dtype: torch.dtype = torch.float32, repeats: int = 3) -> float:
    """GFLOP/s of the best of ``repeats`` [size, size] x [size, size] matmuls at torch's threads."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _seconds(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def whole_respondents(rows: list[Any], n: int, seed: int = 0) -> list[Any]:
    """Respondents drawn at random, all their rows, until ``n`` rows."""
    by_respondent: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_respondent[row.respondent_id].append(row)
    chosen: list[Any] = []
    for respondent in random.Random(seed).sample(sorted(by_respondent), len(by_respondent)):
        if len(chosen) >= n:
            break
        chosen += by_respondent[respondent]
    return chosen[:n]


def body_and_head(model: nn.Module) -> tuple[int, int]:
    """Parameters other than the token embedding and the vocabulary projection (adapters included),
    and the projection's."""
    embedding, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    body = sum(p.numel() for p in model.parameters() if p is not embedding and p is not head)
    return body, head.numel()


def build(name: str, quick: bool) -> tuple[Any, Any]:
    torch.manual_seed(0)
    base, tokenizer = (tiny_model(), tiny_tokenizer()) if quick else load_base_model("smollm2-135m-instruct")
    config = ExperimentConfig(train=TrainConfig(report_to=[]))
    return build_method(name, base, config, encoder=RandomProfileEncoder(ENCODER_DIM)), tokenizer


def scoring_rate(prepared: Any, tokenizer: Any, examples: list[Any], reuse: bool) -> dict:
    start = time.perf_counter()
    frame = score_examples(
        prepared,
        tokenizer,
        examples,
        use_embeddings=prepared.uses_demographics,
        batch_size=32,
        reuse_prefix=reuse,
        desc="benchmark",
    )
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "prompts": len(examples), **frame.attrs[SCORING_ATTR]}


def training_rate(prepared: Any, tokenizer: Any, examples: list[Any], grouped: bool, args: Any) -> dict:
    """Tokens/s of ``--steps`` SFT steps (forward, backward, AdamW) after one warm-up step."""
    lengths = None if grouped else [0] * len(examples)
    loader, _ = make_loader(examples, SFTCollator(tokenizer), args.batch, seed=0, lengths=lengths)
    precision = resolve_precision("auto", "train", "cpu")
    params = [p for p in prepared.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision.name == "bf16")
    prepared.train()
    tokens, padded, seconds = 0, 0, 0.0
    for step, batch in zip(range(args.steps + 1), loader, strict=False):
        start = time.perf_counter()
        with autocast:
            loss = SFT().loss(prepared, prepared, batch)
        (loss.value / SFT().units(batch) + loss.aux_loss).backward()
        optimizer.step()
        optimizer.zero_grad()
        if step > 0:
            seconds += time.perf_counter() - start
            tokens += int(batch["attention_mask"].sum())
            padded += batch["attention_mask"].numel()
    return {"seconds": seconds, "tokens": tokens, "padded": padded, "precision": precision.name}


def row(*cells: str) -> str:
    """One line of the table: method, what, mode, rate, GFLOP/s, share of peak, notes."""
    name, what, mode, rate, gflops, share, note = cells
    return f"{name:7s} {what:8s} {mode:8s} {rate:>16s} {gflops:>8s} {share:>7s}  {note}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16, help="training batch (scoring uses 32)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each mode, interleaved; best kept")
    parser.add_argument("--plain", action="store_true", help="only plain scoring and a plain shuffle")
    parser.add_argument("--quick", action="store_true", help="a tiny random model: checks the script")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.prompts, args.steps, args.batch = min(args.prompts, 24), min(args.steps, 2), min(args.batch, 4)
    print(machine(args.threads))
    print(f"start: {load_average()}")
    size = 1024 if args.quick else 2048
    peak = matmul_peak(size)
    print(f"fp32 matmul peak {peak:.1f} GFLOP/s, bf16 {matmul_peak(size, torch.bfloat16):.1f} (best of 3)")
    print(f"rates: the best of {args.repeats} runs per mode, modes interleaved")
    data = prepare_data(ExperimentConfig.from_yaml(MAIN_JOB).data)
    modes = [False] if args.plain else [False, True]
    print(row("method", "what", "mode", "rate", "GFLOP/s", "of peak", "notes"), flush=True)
    for name in METHODS:
        for line in bench_method(name, data, modes, peak, args):
            print(line, flush=True)
    print(f"end: {load_average()}")


def bench_method(name: str, data: Any, modes: list[bool], peak: float, args: Any) -> Iterator[str]:
    """The table's lines of one method: scoring per mode, then training per mode."""
    prepared, tokenizer = build(name, args.quick)
    persona = persona_in_prompt(name, ExperimentConfig())
    body, head = body_and_head(prepared.model)
    encoder = RandomProfileEncoder(ENCODER_DIM)
    scored = attach_embeddings(whole_respondents(data.examples("test", persona), args.prompts), encoder)
    scoring_rate(prepared, tokenizer, scored[:4], False)  # warm-up, not timed
    for reuse, r in best_of(args.repeats, modes, partial(scoring_rate, prepared, tokenizer, scored)).items():
        gflops = (2 * body * r["prompt_tokens"] + 2 * head * r["prompts"]) / r["seconds"] / 1e9
        note = f"{r['prompt_tokens']} tokens, {r['computed_tokens']} computed, {r['precision']}"
        rate = f"{r['prompts'] / r['seconds']:.2f} prompts/s"
        yield row(
            name,
            "scoring",
            "reused" if reuse else "plain",
            rate,
            f"{gflops:.2f}",
            f"{gflops / peak:.1%}",
            note,
        )
    if not prepared.trainable:
        yield row(name, "training", "-", "-", "-", "-", "nothing to train")
        return
    trained = attach_embeddings(data.examples("train", persona), encoder)
    measure = partial(training_rate, prepared, tokenizer, trained, args=args)
    for grouped, r in best_of(args.repeats, modes, measure).items():
        gflops = 6 * (body + head) * r["tokens"] / r["seconds"] / 1e9
        note = f"{r['tokens']} tokens of {r['padded']} padded, {r['precision']}"
        rate = f"{r['tokens'] / r['seconds']:.0f} tokens/s"
        mode = "grouped" if grouped else "shuffle"
        yield row(name, "training", mode, rate, f"{gflops:.2f}", f"{gflops / peak:.1%}", note)


def best_of(repeats: int, modes: list[bool], measure: Any) -> dict[bool, dict]:
    """Each mode's fastest of ``repeats`` runs, the modes interleaved so that a change of machine load
    falls on both."""
    best: dict[bool, dict] = {}
    for _ in range(repeats):
        for mode in modes:
            result = measure(mode)
            if mode not in best or result["seconds"] < best[mode]["seconds"]:
                best[mode] = result
    return best


if __name__ == "__main__":
    main()
