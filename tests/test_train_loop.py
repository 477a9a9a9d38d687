"""The training loop: loss, schedule length, learning-rate groups, reproducibility, faults, logging."""

import dataclasses
import itertools
import math
import re

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from transformers import get_scheduler

from cuma.errors import ConfigError
from cuma.methods import PreparedModel
from cuma.train.data import EpochSampler, make_loader
from cuma.train.optim import build_optimizer
from cuma.train.trainer import train
from train_toys import run, toy_collate, toy_config, toy_method, toy_rows, weights


def test_linear_schedule_ends_exactly_at_the_last_real_step(tmp_path):
    # 10 rows, batch 2 -> 5 micro-batches per epoch; grad_accum 2 -> 3 optimizer steps per epoch; 2 epochs.
    config = toy_config(schedule="linear", warmup_ratio=0.3, epochs=2)
    _, result = run("lora", config, tmp_path)
    total = math.ceil(10 / 2 / 2) * 2
    assert result.plan.total_steps == total == len(result.history)
    probe = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config.train.lr)
    expected = get_scheduler("linear", probe, num_warmup_steps=round(0.3 * total), num_training_steps=total)
    used = []
    for _ in range(total):
        used.append(probe.param_groups[0]["lr"])
        probe.step()
        expected.step()
    assert [h["lr"] for h in result.history] == pytest.approx(used)
    assert result.history[-1]["lr"] > 0
    state = result.checkpoint / "trainer_state.json"
    assert '"_last_lr": [\n      0.0' in state.read_text()  # the end value, reached at the last step


def test_separate_learning_rates_per_component(tmp_path):
    config = toy_config(
        {"cuma": {"demographic_projection_layers": 1}}, lr=1e-3, router_lr=2e-3, projection_lr=3e-3
    )
    prepared = toy_method("cuma", config)
    optimizer = build_optimizer(prepared.parameter_groups(), config.train)
    lrs = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert lrs == {
        "experts": 1e-3,
        "routers": 2e-3,
        "routers/no_decay": 2e-3,
        "projection": 3e-3,
        "projection/no_decay": 3e-3,
    }
    for group in optimizer.param_groups:
        assert all((p.ndim < 2) == group["name"].endswith("/no_decay") for p in group["params"])
        if group["name"].endswith("/no_decay"):
            assert group["weight_decay"] == 0.0
    in_groups = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(in_groups) == sorted(id(p) for p in prepared.trainable_parameters().values())

    _, result = run("cuma", config, tmp_path)
    assert result.history[0]["lr/routers"] == 2e-3 and result.history[0]["lr/projection"] == 3e-3


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    overrides = {"cuma": {"dropout": 0.2}}
    first, _ = run("cuma", toy_config(overrides, seed=3), tmp_path / "a")
    again, _ = run("cuma", toy_config(overrides, seed=3), tmp_path / "b")
    other, _ = run("cuma", toy_config(overrides, seed=4), tmp_path / "c")
    a, b, c = weights(first), weights(again), weights(other)
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not all(torch.equal(a[name], c[name]) for name in a)


def test_accumulation_takes_the_mean_over_all_answer_tokens_of_a_step(tmp_path):
    # Rows have 1-3 answer tokens; one step of batch 4 must equal one step of 2 x 2 accumulated.
    whole, _ = run("lora", toy_config(batch_size=4, grad_accum=1, max_steps=1), tmp_path / "a")
    split, _ = run("lora", toy_config(batch_size=2, grad_accum=2, max_steps=1), tmp_path / "b")
    a, b = weights(whole), weights(split)
    assert all(torch.allclose(a[name], b[name], atol=1e-6) for name in a)
    assert any(not torch.equal(a[name], weights(toy_method("lora", toy_config()))[name]) for name in a)


def test_nan_loss_names_the_step_and_the_batch(tmp_path):
    rows = toy_rows()
    rows[7]["embed"] = torch.full_like(rows[7]["embed"], float("nan"))
    position = list(EpochSampler(len(rows), seed=42)).index(7)  # 42: TrainConfig's default seed
    step = position // 2 // 2 + 1
    with pytest.raises(FloatingPointError, match=rf"step {step}, micro-batch {position // 2} .*'r7'"):
        run("cuma", toy_config(), tmp_path, rows=rows)


@pytest.mark.parametrize("max_grad_norm", [1.0, 0.0])
def test_non_finite_gradient_with_a_finite_loss_names_the_step_and_the_batches(tmp_path, max_grad_norm):
    AcceleratorState._reset_state(reset_partial_state=True)
    config = toy_config(max_grad_norm=max_grad_norm)
    prepared = toy_method("lora", config)
    backward = itertools.count(1)
    param = next(iter(prepared.trainable_parameters().values()))
    # grad_accum 2: the third backward pass is the first micro-batch of step 2.
    param.register_hook(lambda grad: grad * math.inf if next(backward) == 3 else grad)
    order = list(EpochSampler(10, seed=42))
    ids = [f"r{i}" for i in order[4:6]]
    expected = rf"finite loss at step 2, micro-batches 2-3 .*\[2\] respondent_id={re.escape(str(ids))}"
    with pytest.raises(FloatingPointError, match=expected):
        train(prepared, toy_rows(), toy_collate, config.train, tmp_path)


def test_batches_carry_the_example_ids_for_error_messages():
    @dataclasses.dataclass
    class Row:
        respondent_id: str
        question_id: str

    loader, _ = make_loader([Row(f"r{i}", "q1") for i in range(4)], lambda rows: {"n": len(rows)}, 4, seed=0)
    batch = next(iter(loader))
    assert sorted(batch["respondent_id"]) == ["r0", "r1", "r2", "r3"] and batch["question_id"] == ["q1"] * 4


def test_bf16_autocast_trains_fp32_weights_and_leaves_the_model_unpatched(tmp_path):
    prepared, result = run("cuma", toy_config(precision="bf16", max_steps=2), tmp_path)
    assert all(math.isfinite(h["loss"]) for h in result.history)
    assert all(p.dtype == torch.float32 for p in prepared.trainable_parameters().values())
    # accelerate's autocast wrapper is removed after training: calls run in fp32 again.
    batch = toy_collate(toy_rows(2))
    args = (batch["input_ids"], batch["attention_mask"], batch["demographic_embeds"])
    with torch.no_grad():
        assert torch.equal(prepared(*args).logits, PreparedModel.forward(prepared, *args).logits)


def test_tensorboard_events_and_routing_statistics(tmp_path):
    config = toy_config(report_to=["tensorboard"], routing_stats_every=2, max_steps=2)
    _, result = run("cuma", config, tmp_path)
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))
    first, second = result.history
    assert not any(key.startswith("routing/") for key in first)
    layers = {key.split("/")[1] for key in second if key.startswith("routing/") and key.count("/") == 2}
    assert layers
    for layer in layers:
        loads = [v for k, v in second.items() if k.startswith(f"routing/{layer}/load_")]
        assert len(loads) == 8 and sum(loads) == pytest.approx(1.0)
        assert 0.0 <= second[f"routing/{layer}/entropy"] <= math.log(2) + 1e-6  # top-2 of 8
    assert 1.0 <= second["routing/max_imbalance"] <= 8.0


def test_routing_statistics_reach_the_tracker_between_log_steps(tmp_path, monkeypatch):
    logged = {}
    monkeypatch.setattr(
        Accelerator, "log", lambda self, values, step=None, **_: logged.update({step: values})
    )
    run("cuma", toy_config(log_every=10, routing_stats_every=2, max_steps=3), tmp_path)
    assert sorted(logged) == [2, 3]  # step 2 recorded routing; step 3 is the last
    assert any(key.startswith("routing/") for key in logged[2])


@pytest.mark.parametrize(
    ("field", "value"),
    [("precision", "fp16"), ("grad_accum", 0), ("warmup_ratio", 1.5), ("save_every", 0), ("epochs", 0)],
)
def test_bad_train_settings_name_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"train\.{field}={value!r}"):
        toy_config(**{field: value})


def test_warmup_with_a_constant_schedule_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="constant_with_warmup"):
        run("lora", toy_config(schedule="constant", warmup_ratio=0.1), tmp_path)


def test_a_step_without_answer_tokens_is_an_error(tmp_path):
    rows = toy_rows()
    for row in rows:
        row["labels"][:] = -100
    with pytest.raises(ValueError, match="step 1: no answer tokens"):
        run("lora", toy_config(), tmp_path, rows=rows)


def test_prompting_methods_have_nothing_to_train(tmp_path):
    with pytest.raises(ValueError, match="'persona' has nothing to train"):
        run("persona", toy_config(), tmp_path)


def test_one_process_trains_at_one_precision_then_at_another(tmp_path):
    """accelerate keeps one precision per process; the trainer starts its state again for another."""
    for i, precision in enumerate(("bf16", "fp32", "bf16")):
        config = toy_config(precision=precision, max_steps=1)
        train(toy_method("lora", config), toy_rows(4), toy_collate, config.train, tmp_path / f"run{i}")
        assert AcceleratorState().mixed_precision == ("no" if precision == "fp32" else "bf16")
