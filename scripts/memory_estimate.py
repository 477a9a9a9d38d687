"""Memory per GPU to train a method of an experiment config under DDP, FSDP2 and DeepSpeed ZeRO-2/3.

Nothing is downloaded: the base model is built on the meta device from its config numbers (`MODELS`)
and the method on top of it exactly as `cuma train` builds it, so the trainable count is the real one.
Bytes per GPU over N GPUs, Psi_b frozen base and Psi_t trainable parameters (`STRATEGIES`):

  strategy  base       trainable  gradients        optimizer (AdamW)
  DDP       2 Psi_b    4 Psi_t    4 Psi_t + 4 Psi_t  8 Psi_t     fp32 adapters are their own master;
                                                                 + DDP's fp32 reduction buckets
  FSDP2     2 Psi_b/N  4 Psi_t/N  4 Psi_t/N        8 Psi_t/N     + the gathered units (bf16)
  ZeRO-2    2 Psi_b    2 Psi_t    2 Psi_t/N        12 Psi_t/N    DeepSpeed bf16 casts the module to bf16;
  ZeRO-3    2 Psi_b/N  2 Psi_t/N  2 Psi_t/N        12 Psi_t/N    fp32 master + m + v per trainable

Activations are the same under every strategy (each GPU holds its own micro-batch of b x s tokens,
padded to the longest example, so data.max_length is the worst case): what autograd saves between
forward and backward, per token and decoder layer as `activation_bytes` states for a Qwen3 block in
bf16 autocast with the base frozen. The full-vocabulary logits (b x s x V, bf16) exist for a moment in
forward and as their gradient in backward; SFT reads only the answer positions. Gradient checkpointing
(``train.gradient_checkpointing``, on in the paper config) keeps only each block's input; the table shows
both.

    python scripts/memory_estimate.py [--config configs/wvb-qwen3-8b-paper.yaml] [--method cuma] [--gpus 8]
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, Qwen3Config

from cuma.adapter import CuMAConfig
from cuma.adapter.dispatch import choose_dispatch
from cuma.config import ExperimentConfig
from cuma.methods import build_method
from cuma.quick import RandomProfileEncoder

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "configs" / "wvb-qwen3-8b-paper.yaml"
GIB = 1024**3

MODELS = {
    "Qwen/Qwen3-8B": {
        "vocab_size": 151936,
        "hidden_size": 4096,
        "intermediate_size": 12288,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "tie_word_embeddings": False,
    },
}
"""Config numbers of the base models this script knows (from their config.json)."""

ENCODER_DIMS = {"Qwen/Qwen3-Embedding-0.6B": 1024}
"""Output size of the known demographic encoders (only the size matters for the adapter)."""


def model_config(name: str) -> Qwen3Config:
    if name not in MODELS:
        raise SystemExit(
            f"model.name={name!r}: unknown to scripts/memory_estimate.py; add its config numbers to MODELS "
            f"(known: {sorted(MODELS)})"
        )
    return Qwen3Config(**MODELS[name])


@dataclass(frozen=True)
class Counts:
    """Parameter counts of a method built on a base model, and the adapter settings (None: no adapter)."""

    base: int
    trainable: int
    adapter: CuMAConfig | None


def count_parameters(
    config: Qwen3Config, experiment: ExperimentConfig, method: str, encoder_dim: int, device: str = "meta"
) -> Counts:
    """Build the base from ``config`` on ``device`` and ``method`` on it as `cuma train` does; count."""
    with torch.device(device):
        base = AutoModelForCausalLM.from_config(copy.deepcopy(config))
    prepared = build_method(method, base, experiment, encoder=RandomProfileEncoder(encoder_dim))
    report = prepared.parameter_report()
    adapter = prepared.model.peft_config["default"] if prepared.spec.kind == "adapter" else None
    return Counts(report.base_parameters, report.trainable, adapter)


SHARED_INPUTS = {"q_proj": "attn", "k_proj": "attn", "v_proj": "attn", "gate_proj": "mlp", "up_proj": "mlp"}


def activation_bytes(config: Qwen3Config, adapter: CuMAConfig | None, dispatch: str) -> int:
    """Bytes autograd saves per token per decoder layer (bf16 autocast, frozen base, padded batches).

    h hidden, i intermediate, a heads, d head_dim; with a padding mask transformers repeats the KV heads
    before SDPA, so attention saves q, k, v and the output at a*d each. A frozen linear saves no input;
    an adapted one saves its input (once per group of projections reading the same input) and its
    experts' intermediate results. Terms:
      2 RMSNorms, fp32 input + rsqrt          2 (4h + 4)
      q/k RMSNorm per head (Qwen3), fp32      4 (a + g) (d + 1)
      SDPA q, k, v, output bf16 + lse fp32    4 * 2ad + 4a
      SwiGLU: silu input, silu output, up     3 * 2i
      adapted projections                     see `adapter_bytes`
    """
    h, i = config.hidden_size, config.intermediate_size
    a, g, d = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    total = 2 * (4 * h + 4) + 4 * (a + g) * (d + 1) + 4 * 2 * a * d + 4 * a + 3 * 2 * i
    return total + (0 if adapter is None else adapter_bytes(config, adapter, dispatch))


def adapter_bytes(config: CuMAConfig | Qwen3Config, adapter: CuMAConfig, dispatch: str) -> int:
    """Per token per layer for the adapted projections: their inputs (bf16, shared within a group),
    per projection dense ``2 * 2Nr + 2N`` (down, gated down, gates) or sparse ``2 * 2kr + 26k`` (the k
    slots' down and gated down, their weights and three int64 indices), ``2r`` for plain LoRA; per router
    its softmax (fp32), hidden layers (bf16) and top-k bookkeeping."""
    h, i, ad = config.hidden_size, config.intermediate_size, config.num_attention_heads * config.head_dim
    input_size = {"attn": h, "mlp": h, "o_proj": ad, "down_proj": i}
    targets = [name for name in adapter.target_modules if name in (*SHARED_INPUTS, "o_proj", "down_proj")]
    inputs = {SHARED_INPUTS.get(name, name) for name in targets}
    total = sum(2 * input_size[key] for key in inputs)
    n, r, k = adapter.num_experts, adapter.rank, adapter.top_k or adapter.num_experts
    if not adapter.has_router:
        return total + len(targets) * 2 * r
    per_projection = 2 * 2 * k * r + 26 * k if dispatch == "sparse" else 2 * 2 * n * r + 2 * n
    routers = len({SHARED_INPUTS.get(name, name) for name in targets})  # one per sharing group
    router = 4 * n + 2 * adapter.router_hidden_size * (adapter.router_layers - 1) + 12 * k + 4
    return total + len(targets) * per_projection + routers * router


@dataclass(frozen=True)
class Strategy:
    """Bytes per trainable parameter of each kind of state, and what the strategy shards over N GPUs."""

    name: str
    weight: int  # 4: fp32 adapters (torch); 2: DeepSpeed bf16 casts the whole module to bf16
    gradient: int  # DDP adds its fp32 reduction buckets (gradient_as_bucket_view off, accelerate's default)
    optimizer: int  # AdamW m + v (fp32), + the fp32 master copy under DeepSpeed
    shards_weights: bool  # base and trainable weights (FSDP full shard, ZeRO-3)
    keeps_casts: bool  # autocast's bf16 copies of fp32 trainable weights, saved for backward (DDP)


STRATEGIES = (
    Strategy("DDP", 4, 8, 8, shards_weights=False, keeps_casts=True),
    Strategy("FSDP2", 4, 4, 8, shards_weights=True, keeps_casts=False),  # gathers in bf16 itself
    Strategy("ZeRO-2", 2, 2, 12, shards_weights=False, keeps_casts=False),
    Strategy("ZeRO-3", 2, 2, 12, shards_weights=True, keeps_casts=False),
)


@dataclass(frozen=True)
class Row:
    """Bytes per GPU of one strategy; peaks include the logits transient."""

    strategy: str
    base: float
    trainable: float
    gradients: float
    optimizer: float
    gathered: float
    activations: float
    logits: float
    checkpointed: float

    @property
    def states(self) -> float:
        return self.base + self.trainable + self.gradients + self.optimizer + self.gathered

    @property
    def peak(self) -> float:
        return self.states + self.activations + self.logits

    @property
    def peak_checkpointed(self) -> float:
        return self.states + self.checkpointed + self.logits


def rows(config: Qwen3Config, counts: Counts, tokens: int, gpus: int, dispatch: str) -> list[Row]:
    """One row per strategy (gradients and optimizer states are sharded by all but DDP)."""
    layers, h, v = config.num_hidden_layers, config.hidden_size, config.vocab_size
    per_layer = activation_bytes(config, counts.adapter, dispatch)
    activations = tokens * (layers * per_layer + 4 * h)  # + the final norm's fp32 input
    # Checkpointing each decoder layer keeps its bf16 input and recomputes one layer at a time.
    checkpointed = tokens * (layers * 2 * h + per_layer + 4 * h)
    logits = 2 * tokens * v * 2  # up to two [b, s, V] bf16 tensors at once (logits, then their gradient)
    psi_b, psi_t = counts.base, counts.trainable
    # A sharded unit is gathered in bf16: the root (embeddings, lm_head, final norm) stays gathered
    # through a step, a decoder layer is gathered with the next one prefetched.
    root = 2 * v * h + h
    gathered = 2 * (root + 2 * (psi_b - root) / layers)
    table = []
    for s in STRATEGIES:
        weights = gpus if s.shards_weights else 1
        casts = 2 * psi_t if s.keeps_casts else 0
        table.append(
            Row(
                s.name,
                base=2 * psi_b / weights,
                trainable=s.weight * psi_t / weights,
                gradients=s.gradient * psi_t / (1 if s.name == "DDP" else gpus),
                optimizer=s.optimizer * psi_t / (1 if s.name == "DDP" else gpus),
                gathered=gathered if s.shards_weights else 0,
                activations=activations + casts,
                logits=logits,
                checkpointed=checkpointed + casts,
            )
        )
    return table


def markdown(table: list[Row]) -> str:
    head = (
        "| strategy | base | trainable | gradients | optimizer | gathered units | activations "
        "| logits (transient) | peak | activations, checkpointed | peak, checkpointed |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in table:
        cells = [
            row.base, row.trainable, row.gradients, row.optimizer, row.gathered, row.activations, row.logits,
            row.peak, row.checkpointed, row.peak_checkpointed,
        ]  # fmt: skip
        lines.append(f"| {row.strategy} | " + " | ".join(f"{c / GIB:.2f}" for c in cells) + " |")
    return "\n".join(lines)


def expert_dispatch(config: Qwen3Config, adapter: CuMAConfig | None, tokens: int) -> str:
    """The form ``dispatch='auto'`` picks for q_proj in bf16 (the same for every target of these models)."""
    if adapter is None or not adapter.has_router:
        return "dense"
    q_out = config.num_attention_heads * config.head_dim
    return choose_dispatch(adapter, config.hidden_size, q_out, torch.bfloat16, tokens)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=PAPER, help="experiment config (YAML)")
    parser.add_argument("--method", default="cuma", help="a trained method of the config")
    parser.add_argument("--gpus", type=int, default=8, help="N, the GPUs FSDP and ZeRO shard over")
    parser.add_argument(
        "--seq-len", type=int, default=None, help="tokens per example (default data.max_length)"
    )
    parser.add_argument("--batch", type=int, default=None, help="examples per GPU (default train.batch_size)")
    args = parser.parse_args()
    if args.gpus < 1:
        parser.error(f"--gpus={args.gpus}: must be at least 1")
    experiment = ExperimentConfig.from_yaml(args.config)
    config = model_config(experiment.model.name)
    encoder = experiment.model.encoder
    if encoder not in ENCODER_DIMS:
        raise SystemExit(f"model.encoder={encoder!r}: unknown output size; add it to ENCODER_DIMS")
    counts = count_parameters(config, experiment, args.method, ENCODER_DIMS[encoder])
    batch = args.batch or experiment.train.batch_size
    length = args.seq_len or experiment.data.max_length
    dispatch = expert_dispatch(config, counts.adapter, batch * length)
    per_layer = activation_bytes(config, counts.adapter, dispatch)
    print(
        f"{experiment.model.name} ({config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"{config.num_attention_heads} heads / {config.num_key_value_heads} KV, head_dim {config.head_dim}, "
        f"intermediate {config.intermediate_size}, vocab {config.vocab_size}); method {args.method!r}"
    )
    print(
        f"base {counts.base:,} parameters ({experiment.model.dtype}, frozen); trainable "
        f"{counts.trainable:,} ({100 * counts.trainable / counts.base:.2f} %)"
    )
    print(
        f"per GPU {batch} x {length} tokens (train.batch_size x data.max_length); N = {args.gpus} GPUs; "
        f"experts {dispatch}; {per_layer:,} activation bytes per token per layer; gradient checkpointing "
        "off in cuma's trainer\n"
    )
    table = rows(config, counts, batch * length, args.gpus, dispatch)
    print("GiB per GPU\n")
    print(markdown(table))


if __name__ == "__main__":
    main()
