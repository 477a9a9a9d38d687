"""CPU timing of one adapted projection: CuMA's vectorised layer against its floor and alternatives.

Compared side by side in one run (round-robin over implementations, median of repeats):
  base       the frozen nn.Linear alone (the floor)
  cuma-dense MixtureLoRALinear + its router on [hidden ; demographic], top-k, aux loss included, every
             expert computed (CuMAConfig.dispatch='dense')
  cuma-sparse the same computing only the selected experts (dispatch='sparse': one expert at a time on
             CPU, grouped_mm on CUDA); the summary says which of the two dispatch='auto' picks
             (cuma/adapter/dispatch.py)
  reference  reference-style layer: router on the concatenated [h ; d] input, then a Python loop over
             top-k slots x experts with boolean-mask gather/scatter (kept here only, for comparison)
  peft-lora  PEFT LoRA at the same rank (one expert, no router)
Two units are timed: one projection with its router, and a q+v pair sharing one router per block
(CuMA computes it once, the reference once per projection).
bf16 means bf16 activations and bf16 base/reference/PEFT weights; the CuMA layer keeps float32 adapter
parameters (its training set-up) and casts them to bf16 per call. Not a test: it prints numbers.
The load average is printed before and after: on a shared machine other work slows every row alike.

    python benchmarks/layer.py [--quick] [--threads N] [--device cuda] [--dtypes fp32] [--ranks 64]
        [--units 1proj] [--impls cuma-sparse,peft-lora] [--repeats 9]
"""

from __future__ import annotations

import argparse
import functools
import operator
import os
import statistics
import time
from collections.abc import Callable, Iterable

import torch
from peft import LoraConfig
from peft.tuners.lora import Linear as PeftLoraLinear
from torch import nn

from cuma.adapter import CuMAConfig, MixtureLoRALinear, Router, RoutingState
from cuma.adapter.dispatch import choose_dispatch
from cuma.adapter.router import use_routing

HIDDEN, EXPERTS, TOP_K, DEMOGRAPHIC, ROUTER_HIDDEN = 2048, 8, 2, 384, 256
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
IMPLS = ("base", "cuma-dense", "cuma-sparse", "reference", "peft-lora")
UNITS = {"1proj": 1, "q+v": 2}
"""The timed units and their projections: one adapted linear with its router, or q and v sharing one."""


class ReferenceLoopLoRA(nn.Module):
    """The per-expert loop formulation the vectorised layer replaces (benchmark only)."""

    def __init__(self, base: nn.Linear, rank: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.base = base
        self.scaling = 2.0
        factory = {"dtype": dtype}
        self.lora_a = nn.ParameterList(
            nn.Parameter(torch.randn(rank, HIDDEN, **factory) * 0.01) for _ in range(EXPERTS)
        )
        self.lora_b = nn.ParameterList(
            nn.Parameter(torch.randn(HIDDEN, rank, **factory) * 0.01) for _ in range(EXPERTS)
        )
        self.router = nn.Sequential(
            nn.Linear(HIDDEN + DEMOGRAPHIC, ROUTER_HIDDEN), nn.ReLU(), nn.Linear(ROUTER_HIDDEN, EXPERTS)
        ).to(dtype)

    def forward(self, x: torch.Tensor, demographic: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        d = demographic[:, None, :].expand(-1, x.shape[1], -1).to(x.dtype)
        probs = self.router(torch.cat([x, d], dim=-1)).softmax(dim=-1)
        values, index = probs.topk(TOP_K, dim=-1)
        values = values.softmax(dim=-1)
        lora_out = torch.zeros_like(out)
        for slot in range(TOP_K):
            for e in range(EXPERTS):
                mask = index[..., slot] == e
                if mask.any():
                    delta = x[mask] @ self.lora_a[e].t() @ self.lora_b[e].t()
                    lora_out[mask] += values[..., slot][mask].unsqueeze(-1) * self.scaling * delta
        return out + lora_out


Outputs = tuple[torch.Tensor, torch.Tensor | None]
"""What one call returns: the projections' summed output and, for CuMA, the routers' aux loss (a scalar
that a training step adds to its loss, never to the activations)."""
Impl = tuple[Callable[[torch.Tensor, torch.Tensor], Outputs], list[nn.Parameter]]


def total(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """The sum of ``tensors`` without the copy that ``sum()``'s start value 0 adds to the first."""
    return functools.reduce(operator.add, tensors)


def cuma_config(rank: int, dispatch: str = "auto") -> CuMAConfig:
    return CuMAConfig.from_preset(
        "cuma", rank=rank, alpha=2 * rank, demographic_input_dim=DEMOGRAPHIC, dispatch=dispatch
    )


def build(rank: int, dtype: torch.dtype, projections: int, device: torch.device) -> dict[str, Impl]:
    """Each implementation as (``f(x, d)``, its trainable parameters): ``projections`` adapted linears on
    the same input (q, v, ...) sharing one router, outputs summed so one backward covers them all."""
    torch.manual_seed(0)
    factory = {"device": device, "dtype": dtype}
    bases = [nn.Linear(HIDDEN, HIDDEN, **factory).requires_grad_(False) for _ in range(projections)]

    def copy_of(base: nn.Linear) -> nn.Linear:
        clone = nn.Linear(HIDDEN, HIDDEN, **factory).requires_grad_(False)
        clone.load_state_dict(base.state_dict())
        return clone

    def run_cuma(dispatch: str) -> Impl:
        config = cuma_config(rank, dispatch)
        routers = nn.ModuleDict({"r": Router(config, HIDDEN)}).to(device)
        layers = [MixtureLoRALinear(copy_of(base), f"proj{i}") for i, base in enumerate(bases)]
        for layer in layers:
            layer.update_layer("default", config, "r")
            nn.init.normal_(layer.cuma_B["default"], std=0.01)

        def run(x: torch.Tensor, d: torch.Tensor) -> Outputs:
            state = RoutingState(routers, config, demographic=d)  # one per call: the router runs once
            with use_routing(state):
                output = total(layer(x) for layer in layers)
            return output, total(state.aux_losses)  # the aux loss is part of a training step's cost

        return run, trainable([routers, *layers])

    reference = [ReferenceLoopLoRA(copy_of(base), rank, dtype).to(device) for base in bases]
    for layer in reference[1:]:
        layer.router = reference[0].router  # shared, but recomputed by every projection as in the reference
    peft_config = LoraConfig(r=rank, lora_alpha=2 * rank)
    peft = [
        PeftLoraLinear(copy_of(base), "default", config=peft_config, r=rank, lora_alpha=2 * rank)
        for base in bases
    ]

    return {
        "base": (lambda x, d: (total(base(x) for base in bases), None), []),
        "cuma-dense": run_cuma("dense"),
        "cuma-sparse": run_cuma("sparse"),
        "reference": (lambda x, d: (total(layer(x, d) for layer in reference), None), trainable(reference)),
        "peft-lora": (lambda x, d: (total(layer(x) for layer in peft), None), trainable(peft)),
    }


def trainable(modules: list[nn.Module]) -> list[nn.Parameter]:
    return [p for module in modules for p in module.parameters() if p.requires_grad]


def time_once(fn: Callable[[], object], device: torch.device) -> float:
    synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    synchronize()
    start = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - start


def measure(
    impls: dict[str, Impl], x: torch.Tensor, d: torch.Tensor, repeats: int
) -> dict[tuple[str, str], float]:
    """Median seconds per (implementation, mode), round-robin so drift hits all implementations alike."""
    grad = torch.randn_like(x)

    def forward(fn: Callable, params: list[nn.Parameter]) -> Callable[[], object]:
        def run() -> None:
            with torch.no_grad():
                fn(x, d)

        return run

    def forward_backward(fn: Callable, params: list[nn.Parameter]) -> Callable[[], object]:
        def run() -> None:
            # Fresh gradients every step, as after optimizer.zero_grad(): no accumulation into old ones.
            for tensor in (x, *params):
                tensor.grad = None
            output, aux = fn(x, d)
            if aux is None:
                output.backward(grad)
            else:
                torch.autograd.backward([output, aux], [grad, torch.ones_like(aux)])

        return run

    jobs = {
        (name, mode): make(fn, params)
        for name, (fn, params) in impls.items()
        for mode, make in (("fwd", forward), ("fwd+bwd", forward_backward))
    }
    for job in jobs.values():  # warm-up
        job()
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in jobs}
    for _ in range(repeats):
        for key, job in jobs.items():
            samples[key].append(time_once(job, x.device))
    return {key: statistics.median(times) for key, times in samples.items()}


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1024 tokens, r=8 and r=64, 3 repeats")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma-separated, from fp32 and bf16")
    parser.add_argument("--ranks", default="8,64", help="comma-separated adapter ranks")
    parser.add_argument("--units", default=",".join(UNITS), help=f"comma-separated, from {', '.join(UNITS)}")
    parser.add_argument(
        "--impls", default=",".join(IMPLS), help="comma-separated implementations (base is always timed)"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    dtypes, units = args.dtypes.split(","), args.units.split(",")
    impls = ["base", *(name for name in args.impls.split(",") if name != "base")]
    for flag, given, known in (
        ("--dtypes", dtypes, DTYPES),
        ("--units", units, UNITS),
        ("--impls", impls, IMPLS),
    ):
        unknown = sorted(set(given) - set(known))
        if unknown:
            parser.error(f"{flag}: unknown {unknown}; expected some of {sorted(known)}")
    try:
        ranks = [int(rank) for rank in args.ranks.split(",")]
    except ValueError:
        parser.error(f"--ranks {args.ranks!r}: expected comma-separated integers")
    torch.set_num_threads(args.threads)
    sequences, length = (2, 512) if args.quick else (8, 1024)
    repeats = args.repeats or (3 if args.quick else 5)
    cpu = f"CPU, {torch.get_num_threads()} threads"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    print(
        f"{where}, torch {torch.__version__}; in=out={HIDDEN}, N={EXPERTS}, k={TOP_K}, "
        f"{sequences * length} tokens ({sequences}x{length}), median of {repeats}; {load()}"
    )
    header = f"{'unit':<6} {'dtype':<5} {'r':>3} {'impl':<11} {'fwd ms':>9} {'fwd+bwd ms':>11} {'x base':>11}"
    header += f" {'ref / impl':>11}"
    print(header + "\n" + "-" * len(header))
    summary = []
    for unit in units:
        projections = UNITS[unit]
        for label in dtypes:
            dtype = DTYPES[label]
            for rank in ranks:
                torch.manual_seed(1)
                x = torch.randn(sequences, length, HIDDEN, dtype=dtype, device=device, requires_grad=True)
                d = torch.randn(sequences, DEMOGRAPHIC, device=device)
                built = build(rank, dtype, projections, device)
                t = measure({name: built[name] for name in impls}, x, d, repeats)
                for name in impls:
                    row = f"{unit:<6} {label:<5} {rank:>3} {name:<11} {t[name, 'fwd'] * 1e3:>9.1f}"
                    row += f" {t[name, 'fwd+bwd'] * 1e3:>11.1f} {ratios(t, name, 'base'):>11}"
                    print(f"{row} {ratios(t, 'reference', name):>11}", flush=True)
                summary.append((unit, label, rank, dtype, t))
    print(
        f"\n{load()}\nratios: fwd/fwd+bwd. Targets (fwd+bwd, the form dispatch='auto' picks): >= 3x faster "
        "than reference, <= 1.6x base at r=8 and <= 1.5x base at r=64 (fp32).\n"
        "No adapter can beat the frozen base linear it wraps, so reference/base bounds any speed-up."
    )
    for unit, label, rank, dtype, t in summary:
        auto = "cuma-" + choose_dispatch(cuma_config(rank), HIDDEN, HIDDEN, dtype, sequences * length)
        other = "cuma-dense" if auto == "cuma-sparse" else "cuma-sparse"
        if (auto, "fwd+bwd") not in t:
            continue
        line = f"{unit} {label} r={rank}: auto picks {auto}, {times(t, auto, 'base')} the base"
        if (other, "fwd+bwd") in t:
            line += f" ({other} {times(t, other, 'base')})"
        if ("reference", "fwd+bwd") in t:
            line += f", {times(t, 'reference', auto)} faster than reference"
        print(line)


def times(t: dict[tuple[str, str], float], a: str, b: str) -> str:
    """fwd+bwd of ``a`` as a multiple of ``b``'s."""
    return f"{t[a, 'fwd+bwd'] / t[b, 'fwd+bwd']:.2f}x"


def ratios(t: dict[tuple[str, str], float], a: str, b: str) -> str:
    """``a``'s time over ``b``'s, fwd/fwd+bwd; a dash when either was not timed (--impls)."""
    if (a, "fwd") not in t or (b, "fwd") not in t:
        return "—"
    return f"{t[a, 'fwd'] / t[b, 'fwd']:.2f}/{t[a, 'fwd+bwd'] / t[b, 'fwd+bwd']:.2f}"


if __name__ == "__main__":
    main()
