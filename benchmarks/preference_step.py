"""Peak memory and time of one DPO or GRPO optimizer step against SFT on SmolLM2-135M-Instruct.

    python benchmarks/preference_step.py [--batch 4] [--tokens 128] [--repeats 3] [--threads 2] [--device cpu]

SFT runs 2B rows of T random tokens and DPO B pairs whose chosen and rejected sides are T tokens each
(one shared prompt, different responses), so both see the same sequences and tokens; the last
``RESPONSE_TOKENS`` tokens of each row are labelled. DPO's reference is the policy with its adapters
disabled, inside ``loss``. GRPO samples ``GENERATIONS`` answers of ``NEW_TOKENS`` tokens for each of B
prompts of T - ``NEW_TOKENS`` tokens, with random rewards; its step includes the rollout.

Each (objective, method) runs in a fresh process, so one measurement's memory cannot leak into another's:
its first step gives the peak RSS above the RSS just before it (Linux: the high-water mark is reset
through /proc/self/clear_refs first, so loading the model does not count); its second step the peak of
torch's own allocations above their level before it (``torch.profiler`` memory events on CPU,
``torch.cuda.max_memory_allocated`` on CUDA); then ``--repeats`` timed steps give the median time.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile
from tqdm.auto import tqdm

from cuma.config import DPOConfig, ExperimentConfig, GRPOConfig, TrainConfig
from cuma.methods import PreparedModel, build_method
from cuma.models import load_base_model
from cuma.quick import RandomProfileEncoder
from cuma.train.loss import IGNORE_INDEX
from cuma.train.objectives import DPO, GRPO, SFT, Objective
from cuma.train.optim import build_optimizer
from cuma.train.rewards import RewardOutput

ENCODER_DIM = 384  # all-MiniLM-L6-v2
RESPONSE_TOKENS = 8
GENERATIONS = 4
NEW_TOKENS = 8
MIB = 2**20
RESULT = "RESULT "
RUNS = (("sft", "lora"), ("dpo", "lora"), ("sft", "cuma"), ("dpo", "cuma"), ("grpo", "cuma"))
LIMIT = 1.15  # the bound on DPO's peak over SFT's


@dataclass
class Measurement:
    """One (objective, method) run; memory is the peak above the level just before the step, in MiB."""

    objective: str
    method: str
    sequences: int
    tokens: int
    seconds: float
    rss_mib: float | None
    torch_mib: float
    rollout_seconds: float | None = None


def labelled_rows(ids: torch.Tensor) -> dict[str, torch.Tensor]:
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, -RESPONSE_TOKENS:] = ids[:, -RESPONSE_TOKENS:]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def make_batch(objective: str, args: argparse.Namespace, vocab: int) -> dict[str, Any]:
    """Random token rows for one objective: 2B SFT rows, B DPO pairs, or B GRPO prompts."""
    g = torch.Generator().manual_seed(0)
    pairs, tokens = args.batch, args.tokens
    if objective == "sft":
        batch: dict[str, Any] = labelled_rows(torch.randint(10, vocab, (2 * pairs, tokens), generator=g))
        batch["demographic_embeds"] = torch.randn(2 * pairs, ENCODER_DIM, generator=g)
        return batch
    if objective == "dpo":
        chosen = torch.randint(10, vocab, (pairs, tokens), generator=g)
        rejected = chosen.clone()
        rejected[:, -RESPONSE_TOKENS:] = torch.randint(10, vocab, (pairs, RESPONSE_TOKENS), generator=g)
        batch = {f"chosen_{k}": v for k, v in labelled_rows(chosen).items()}
        batch |= {f"rejected_{k}": v for k, v in labelled_rows(rejected).items()}
        batch["demographic_embeds"] = torch.randn(pairs, ENCODER_DIM, generator=g)
        return batch
    prompts = torch.randint(10, vocab, (pairs, tokens - NEW_TOKENS), generator=g)
    return {
        "input_ids": prompts,
        "attention_mask": torch.ones_like(prompts),
        "demographic_embeds": torch.randn(pairs, ENCODER_DIM, generator=g),
        "examples": [SimpleNamespace(respondent_id=str(i), question_id="q") for i in range(pairs)],
    }


def random_reward(completions: list[str], prompts: list[Any]) -> RewardOutput:
    """Rewards that vary within every group, so the advantages are not all 0."""
    return RewardOutput(torch.rand(len(completions)), unparsable=0)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def optimizer_step(
    prepared: PreparedModel,
    objective: Objective,
    batch: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> None:
    """What the trainer does in one single-process step without accumulation. The rollout's rewards and
    advantages come back on the CPU; they are moved to the model's device."""
    batch = to_device(objective.rollout(prepared, batch), device)
    part = objective.loss(prepared, prepared, batch)
    (part.value / objective.units(batch) + part.aux_loss).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def rss_peak_mib(step: Any) -> float | None:
    """Peak RSS during ``step()`` above the RSS before it; None where the high-water mark cannot be reset."""
    clear_refs = Path("/proc/self/clear_refs")
    if not clear_refs.exists():
        return None
    status = Path("/proc/self/status").read_text()
    before = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
    clear_refs.write_text("5")  # resets the peak RSS to the current RSS (Linux >= 4.0)
    step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # both in KiB


def torch_peak_mib(step: Any, device: torch.device) -> float:
    """Peak of torch's allocations during ``step()`` above their level before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / MIB
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    memory = sorted((e["ts"], e["args"]["Bytes"]) for e in events if e.get("name") == "[memory]")
    level = peak = 0
    for _, size in memory:
        level += size
        peak = max(peak, level)
    return peak / MIB


def timed(fn: Any, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure(objective_name: str, method: str, args: argparse.Namespace) -> Measurement:
    """Build the method, then: one step for RSS, one for torch's allocations, ``repeats`` timed steps."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    base, tokenizer = load_base_model("smollm2-135m-instruct")
    train_config = TrainConfig(report_to=[], lr=1e-4)
    prepared = build_method(
        method, base, ExperimentConfig(train=train_config), encoder=RandomProfileEncoder(ENCODER_DIM)
    )
    prepared.to(device).train()
    optimizer = build_optimizer(prepared.parameter_groups(), train_config)
    objective: Objective = {
        "sft": lambda: SFT(),
        "dpo": lambda: DPO(DPOConfig(reference="adapters-off")),
        "grpo": lambda: GRPO(
            GRPOConfig(num_generations=GENERATIONS, max_new_tokens=NEW_TOKENS), tokenizer, random_reward
        ),
    }[objective_name]()
    batch = to_device(make_batch(objective_name, args, base.config.vocab_size), device)

    def step() -> None:
        optimizer_step(prepared, objective, batch, optimizer, device)

    rss = rss_peak_mib(step) if device.type == "cpu" else None
    allocated = torch_peak_mib(step, device)
    seconds = statistics.median(timed(step, device) for _ in range(args.repeats))
    rollout = None
    if objective_name == "grpo":
        rollout = statistics.median(
            timed(lambda: objective.rollout(prepared, batch), device) for _ in range(args.repeats)
        )
    sequences = 2 * args.batch if objective_name != "grpo" else args.batch * GENERATIONS
    return Measurement(objective_name, method, sequences, args.tokens, seconds, rss, allocated, rollout)


def run_fresh(objective: str, method: str, args: argparse.Namespace) -> Measurement:
    """``measure`` in a new interpreter running this file, so its peaks are its own."""
    command = [sys.executable, __file__, "--measure", f"{objective}:{method}"]
    for name in ("batch", "tokens", "repeats", "threads", "device"):
        command += [f"--{name}", str(getattr(args, name))]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{objective}/{method} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return Measurement(**json.loads(lines[-1][len(RESULT) :]))


def ratio(value: float | None, reference: float | None) -> str:
    return "-" if value is None or not reference else f"{value / reference:.2f}"


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def report(results: list[Measurement], device: str) -> None:
    sft = {r.method: r for r in results if r.objective == "sft"}
    peak_name = "cuda peak" if device.startswith("cuda") else "torch peak"
    header = (
        f"{'objective':9s} {'method':6s} {'seqs x tok':>10s} {'step s':>7s} {'x SFT':>6s} "
        f"{'RSS MiB':>8s} {'x SFT':>6s} {peak_name + ' MiB':>15s} {'x SFT':>6s}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        ref = sft[r.method]
        print(
            f"{r.objective:9s} {r.method:6s} {f'{r.sequences} x {r.tokens}':>10s} {r.seconds:7.2f} "
            f"{ratio(r.seconds, ref.seconds):>6s} {mib(r.rss_mib):>8s} {ratio(r.rss_mib, ref.rss_mib):>6s} "
            f"{mib(r.torch_mib):>15s} {ratio(r.torch_mib, ref.torch_mib):>6s}"
        )
    print("(memory: peak above the level just before the step; SFT is the same method's SFT row)")
    for r in results:
        if r.rollout_seconds is not None:
            share = r.rollout_seconds / r.seconds
            rows = f"{r.sequences} rows ({GENERATIONS} per prompt) against SFT's {sft[r.method].sequences}"
            verdict = (
                "dominated by generation"
                if share > 0.5
                else f"dominated by the policy forward and backward over its {rows}, not by generation"
            )
            print(
                f"GRPO {r.method}: the rollout alone ({GENERATIONS} x {NEW_TOKENS} new tokens per prompt, "
                f"token by token) takes {r.rollout_seconds:.2f} s of the {r.seconds:.2f} s step "
                f"({share:.0%}): here the step is {verdict}"
            )
    for r in results:
        if r.objective == "dpo":
            ref = sft[r.method]
            within = r.torch_mib <= LIMIT * ref.torch_mib
            rss = f", RSS {ratio(r.rss_mib, ref.rss_mib)}x" if r.rss_mib is not None else ""
            print(
                f"DPO {r.method}: {peak_name} {ratio(r.torch_mib, ref.torch_mib)}x SFT's{rss} -> "
                f"{'within' if within else 'ABOVE'} the {LIMIT}x bound"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4, help="DPO pairs B (SFT rows: 2B; GRPO prompts: B)")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per sequence T")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps after the two measured ones")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="auto", help="auto (cuda when present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # OBJECTIVE:METHOD, run in a child process
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.tokens <= max(RESPONSE_TOKENS, NEW_TOKENS):
        parser.error(
            f"--tokens {args.tokens}: must exceed the {max(RESPONSE_TOKENS, NEW_TOKENS)} response tokens"
        )
    if args.measure:
        objective, method = args.measure.split(":")
        print(RESULT + json.dumps(asdict(measure(objective, method, args))), flush=True)
        return
    print(
        f"SmolLM2-135M-Instruct fp32 on {args.device}, {args.threads} threads "
        f"(CPU capability {torch.backends.cpu.get_cpu_capability()}), B={args.batch} pairs, T={args.tokens}, "
        f"median of {args.repeats} steps"
    )
    results = [run_fresh(o, m, args) for o, m in tqdm(RUNS, desc="measurements", unit="run")]
    report(results, args.device)


if __name__ == "__main__":
    main()
