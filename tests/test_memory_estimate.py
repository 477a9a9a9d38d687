"""scripts/memory_estimate.py: its parameter counts and activation formula against real tiny builds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen3Config

from cuma.adapter import CuMAConfig, get_cuma_model
from cuma.config import ExperimentConfig

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("memory_estimate", ROOT / "scripts" / "memory_estimate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


estimate = load_script()

SMALL = Qwen3Config(
    vocab_size=512, hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
    num_key_value_heads=2, head_dim=32, tie_word_embeddings=False,
)  # fmt: skip


@pytest.mark.parametrize("method", ["cuma", "lora", "hydralora", "demographic-only"])
def test_meta_count_equals_a_real_tiny_build(method: str) -> None:
    """The paper config's adapter settings on a scaled-down Qwen3: the meta-device count is the number
    of parameters that really require a gradient when the same method is built with real weights."""
    experiment = ExperimentConfig.from_yaml(estimate.PAPER)
    counts = estimate.count_parameters(SMALL, experiment, method, encoder_dim=16)
    with torch.device("cpu"):
        real = AutoModelForCausalLM.from_config(SMALL)
    real_base = sum(p.numel() for p in real.parameters())
    prepared = estimate.build_method(method, real, experiment, encoder=estimate.RandomProfileEncoder(16))
    assert counts.trainable == sum(p.numel() for p in prepared.model.parameters() if p.requires_grad) > 0
    assert counts.base == real_base


def saved_activation_bytes(model: torch.nn.Module, batch: int, length: int) -> int:
    """Bytes of the tensors autograd saves in one bf16-autocast forward (parameters excluded, each
    storage counted once), with one padded row so the attention takes its masked path."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    torch.manual_seed(0)
    ids = torch.randint(0, SMALL.vocab_size, (batch, length))
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[0, : length // 4] = 0
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", torch.bfloat16):
        model(input_ids=ids, attention_mask=mask, demographic_embeds=torch.randn(batch, 16))
    return sum(saved.values())


@pytest.mark.parametrize("dispatch", ["dense", "sparse"])
def test_activation_formula_matches_what_autograd_saves(dispatch: str) -> None:
    """Within a few percent, from above (the first layer's key path needs no gradient, the formula
    counts it anyway); the bf16 casts of the fp32 trainable weights are the 2 Psi_t term of DDP."""
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(SMALL).to(torch.bfloat16)
    adapter = CuMAConfig.from_preset(
        "cuma", rank=16, router_hidden_size=32, demographic_input_dim=16, dispatch=dispatch
    )
    model = get_cuma_model(base, adapter)
    batch, length = 4, 64
    measured = saved_activation_bytes(model, batch, length)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    per_layer = estimate.activation_bytes(SMALL, adapter, dispatch)
    formula = batch * length * (SMALL.num_hidden_layers * per_layer + 4 * SMALL.hidden_size) + 2 * trainable
    assert 0.9 * formula <= measured <= 1.01 * formula


def test_sparse_experts_save_less_than_dense_at_the_papers_rank() -> None:
    adapter = CuMAConfig.from_preset("cuma", rank=64, num_experts=8, top_k=2)
    config = estimate.model_config("Qwen/Qwen3-8B")
    assert estimate.expert_dispatch(config, adapter, tokens=16 * 1024) == "sparse"
    sparse = estimate.activation_bytes(config, adapter, "sparse")
    assert sparse < estimate.activation_bytes(config, adapter, "dense")


def test_sharded_strategies_shrink_with_more_gpus_and_ddp_does_not() -> None:
    counts = estimate.Counts(base=8_000_000_000, trainable=300_000_000, adapter=None)
    config = estimate.model_config("Qwen/Qwen3-8B")
    two, eight = (
        {row.strategy: row for row in estimate.rows(config, counts, tokens=1024, gpus=n, dispatch="dense")}
        for n in (2, 8)
    )
    assert two["DDP"] == eight["DDP"]
    for name in ("FSDP2", "ZeRO-3"):
        assert eight[name].base == two[name].base / 4 and eight[name].optimizer < two[name].optimizer
    assert eight["ZeRO-2"].base == two["ZeRO-2"].base and eight["ZeRO-2"].gradients < two["ZeRO-2"].gradients
    for row in eight.values():
        assert row.activations > row.checkpointed and row.peak > row.peak_checkpointed > row.states


def test_unknown_model_names_the_table_to_extend() -> None:
    with pytest.raises(SystemExit, match=r"model\.name='acme/llm': unknown to scripts/memory_estimate\.py"):
        estimate.model_config("acme/llm")


def test_paper_table_prints_every_strategy(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["memory_estimate.py", "--gpus", "4"])
    estimate.main()
    out = capsys.readouterr().out
    assert "(4.15 %)" in out  # the paper's trainable share of Qwen3-8B for CuMA r=64
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0][2:] for line in table[1:]] == [s.name for s in estimate.STRATEGIES]


def test_zero_gpus_is_a_usage_error(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["memory_estimate.py", "--gpus", "0"])
    with pytest.raises(SystemExit) as stop:
        estimate.main()
    assert stop.value.code == 2 and "--gpus=0: must be at least 1" in capsys.readouterr().err
