"""DPO and GRPO in cuma's one trainer: the profile reaches every forward (policy, reference, rollouts),
the first DPO loss is ln 2 (policy = reference), runs start from an SFT adapter, and TRL's DPOTrainer
trains a CuMA model with the profile collator."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from accelerate.state import AcceleratorState

from cuma.cli import main
from cuma.config import DPOConfig, GRPOConfig
from cuma.methods import load_trained
from cuma.tiny import tiny_tokenizer
from cuma.train import list_checkpoints
from cuma.train.objectives import DPO
from cuma.train.rewards import RewardOutput
from cuma.train.rollouts import sample_answers
from train_toys import ENCODER_DIM, toy_config, toy_method


def perturbed(method: str) -> Any:
    """A toy method whose experts change the output, so routing differences show."""
    prepared = toy_method(method, toy_config())
    torch.manual_seed(4)
    with torch.no_grad():
        for name, param in prepared.named_parameters():
            if "cuma_B" in name:
                param.normal_(std=0.5)
    return prepared


def pairs(embeds: torch.Tensor) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    batch: dict[str, torch.Tensor] = {}
    for side in ("chosen", "rejected"):
        ids = torch.randint(5, 500, (2, 9), generator=g)
        labels = torch.full_like(ids, -100)
        labels[:, -2:] = ids[:, -2:]
        batch |= {
            f"{side}_input_ids": ids,
            f"{side}_attention_mask": torch.ones_like(ids),
            f"{side}_labels": labels,
        }
    return {**batch, "demographic_embeds": embeds}


@pytest.mark.parametrize(("method", "reads_profile"), [("cuma", True), ("no-demographic", False)])
def test_the_profile_reaches_the_dpo_loss_and_the_grpo_rollouts(method: str, reads_profile: bool) -> None:
    prepared = perturbed(method)
    first, second = torch.randn(2, ENCODER_DIM), torch.randn(2, ENCODER_DIM)
    dpo = DPO(DPOConfig())
    with torch.no_grad():
        losses = [dpo.loss(prepared, prepared, pairs(e)).value for e in (first, second)]
    assert torch.equal(losses[0], losses[1]) is not reads_profile

    tokenizer = tiny_tokenizer()
    examples = [
        SimpleNamespace(respondent_id=f"r{i}", question_id="q", option_letters=("A", "B")) for i in range(2)
    ]
    prompts = torch.randint(5, 500, (2, 6), generator=torch.Generator().manual_seed(1))

    def zero_reward(texts: list[str], prompts_: list[Any]) -> RewardOutput:
        return RewardOutput(torch.zeros(len(texts)), unparsable=len(texts))

    rollouts = []
    for embeds in (first, second):
        batch = {"input_ids": prompts, "attention_mask": torch.ones_like(prompts), "examples": examples}
        torch.manual_seed(7)  # the same sampling noise for both profiles
        config = GRPOConfig(num_generations=3, max_new_tokens=5)
        rollouts.append(
            sample_answers(prepared, {**batch, "demographic_embeds": embeds}, config, tokenizer, zero_reward)
        )
    assert rollouts[0]["input_ids"].shape[0] == 6  # 2 prompts x 3 answers
    assert torch.equal(rollouts[0]["input_ids"], rollouts[1]["input_ids"]) is not reads_profile
    if reads_profile:
        assert torch.equal(rollouts[0]["demographic_embeds"][:3], first[:1].expand(3, -1))


def quick(tmp_path: Path, method: str, *overrides: str) -> Path:
    AcceleratorState._reset_state(reset_partial_state=True)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"data: {{dataset: gss-spending-2018, heldout_cells: {{}}}}\noutput_dir: {tmp_path / 'run'}\n"
    )
    main(["train", "--config", str(config), "--quick", "--method", method, "train.log_every=1", *overrides])
    return tmp_path / "run-quick" / "train"


def first_loss(run: Path) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = next(run.rglob("events.out.tfevents.*"))
    events = EventAccumulator(str(logs))
    events.Reload()
    return events.Scalars("loss")[0].value


def test_dpo_starts_at_ln2_and_moves_the_adapter(tmp_path: Path) -> None:
    """With a fresh adapter (B = 0) the policy equals the reference, so every pair's sigmoid loss is ln 2."""
    root = quick(
        tmp_path, "cuma", "train.objective=dpo", "train.max_steps=2", "train.report_to=[tensorboard]"
    )
    run = root / "cuma-dpo-seed42"
    assert first_loss(run) == pytest.approx(math.log(2), abs=1e-5)
    model = load_trained(list_checkpoints(run / "checkpoints")[-1] / "model")
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "cuma_B" in n)


def test_dpo_from_an_sft_adapter_with_a_precomputed_reference(tmp_path: Path) -> None:
    """The SFT adapter is both the start and the reference, so the first DPO loss is again ln 2 (with the
    adapters-off reference it would not be: the SFT adapter has moved away from the base)."""
    root = quick(tmp_path, "lora", "train.max_steps=3")
    sft = root / "lora-seed42"
    dpo = [
        "train.objective=dpo",
        "train.max_steps=1",
        "train.report_to=[tensorboard]",
        f"train.init_from={sft}",
    ]
    quick(tmp_path, "lora", *dpo, "dpo.reference=precomputed")
    assert first_loss(root / "lora-dpo-seed42") == pytest.approx(math.log(2), abs=1e-4)
    other = tmp_path / "other"
    other.mkdir()
    root2 = quick(other, "lora", *dpo)
    assert first_loss(root2 / "lora-dpo-seed42") != pytest.approx(math.log(2), abs=1e-4)


def test_grpo_runs_end_to_end_on_survey_prompts(tmp_path: Path) -> None:
    root = quick(
        tmp_path, "demographic-only", "train.objective=grpo", "train.max_steps=2", "grpo.num_generations=2"
    )
    assert list_checkpoints(root / "demographic-only-grpo-seed42" / "checkpoints")[-1].name == "step-00000002"


def test_dpo_init_from_another_method_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = quick(tmp_path, "lora", "train.max_steps=1")
    with pytest.raises(SystemExit):
        quick(tmp_path, "cuma", "train.objective=dpo", f"train.init_from={root}/lora-seed42")
    assert "holds method 'lora', this run trains 'cuma'" in capsys.readouterr().err


def test_dpo_from_an_sft_adapter_of_another_base_model_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = quick(tmp_path, "lora", "train.max_steps=1")
    model = list_checkpoints(root / "lora-seed42" / "checkpoints")[-1] / "model"
    record = json.loads((model / "cuma.json").read_text())
    record["base_model"]["name_or_path"] = "another/base-model"
    (model / "cuma.json").write_text(json.dumps(record))
    with pytest.raises(SystemExit):
        quick(tmp_path, "lora", "train.objective=dpo", f"train.init_from={model}")
    err = capsys.readouterr().err
    assert "written for another model" in err and "another/base-model" in err
    assert not (root / "lora-dpo-seed42").exists()


def test_trl_dpo_trainer_trains_a_cuma_model_with_the_profile_collator(tmp_path: Path) -> None:
    from datasets import Dataset
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    from cuma.train.trl_collator import DPOProfileCollator

    prepared = perturbed("cuma")
    model = prepared.model
    g = torch.Generator().manual_seed(0)
    rows = [
        {
            "prompt": f"Question {i}: is tradition important?",
            "chosen": "A",
            "rejected": "B",
            "demographic_embeds": torch.randn(ENCODER_DIM, generator=g).tolist(),
        }
        for i in range(4)
    ]
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    args = TRLDPOConfig(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, learning_rate=1e-2,
        report_to=[], remove_unused_columns=False, save_strategy="no", logging_steps=1, use_cpu=True,
        bf16=False,
    )  # fmt: skip
    tokenizer = tiny_tokenizer()
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        data_collator=DPOProfileCollator(pad_token_id=tokenizer.pad_token_id),
    )
    trainer.train()
    assert trainer.state.log_history[0]["loss"] > 0
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if p.requires_grad)


def test_one_comparison_reports_sft_dpo_and_grpo_runs_of_a_method(tmp_path: Path) -> None:
    from cuma.compare.results import ComparisonResults
    from cuma.compare.run import run_comparison
    from cuma.config import ExperimentConfig
    from cuma.quick import quick_config

    AcceleratorState._reset_state(reset_partial_state=True)
    config = quick_config(ExperimentConfig()).with_overrides(
        [f"output_dir={tmp_path / 'run'}", "methods=[lora, lora@dpo, lora@grpo]", "train.max_steps=1",
         "data.heldout_cells={}", "grpo.num_generations=2"]
    )  # fmt: skip
    out = run_comparison(config, quick=True)
    runs = {run.method for run in ComparisonResults.read(out / "results.json").runs}
    assert {"lora", "lora@dpo", "lora@grpo"} <= runs
    with pytest.raises(ValueError, match="unknown objective 'ppo'"):
        run_comparison(config.with_overrides(["methods=[lora@ppo]"]), quick=True)


def test_the_offline_preference_config_starts_each_dpo_run_from_its_sft_run(tmp_path: Path, caplog) -> None:
    import logging

    from cuma.compare.run import run_comparison
    from cuma.config import ExperimentConfig
    from cuma.quick import quick_config

    AcceleratorState._reset_state(reset_partial_state=True)
    paper = Path(__file__).resolve().parents[1] / "configs" / "gss-preference-offline.yaml"
    config = quick_config(ExperimentConfig.from_yaml(paper)).with_overrides(
        [f"output_dir={tmp_path / 'run'}", "methods=[lora, lora@dpo]", "train.max_steps=1"]
    )
    with caplog.at_level(logging.INFO, logger="cuma.train"):
        out = run_comparison(config, quick=True)
    assert any("lora: starting from" in r.message and "lora-seed42" in r.message for r in caplog.records)
    from cuma.compare.results import ComparisonResults

    runs = {run.method: run for run in ComparisonResults.read(out / "results.json").runs}
    assert runs["lora@dpo"].training["objective"] == "dpo" and runs["lora"].training["objective"] == "sft"
    assert "lora-seed42" in runs["lora@dpo"].training["started_from"]
    assert runs["lora"].training["started_from"] is None and runs["lora@dpo"].training["steps"] == 1


def test_rollout_collator_left_pads_prompts_and_refuses_long_ones() -> None:
    from cuma.data.collate import RolloutCollator
    from cuma.data.errors import DataError

    tokenizer = tiny_tokenizer()
    examples = [
        SimpleNamespace(
            respondent_id=f"r{i}", question_id="q", embedding=[float(i)] * 4,
            prompt_messages=({"role": "user", "content": "Which? " * (i + 1)},),
        )
        for i in range(2)
    ]  # fmt: skip
    batch = RolloutCollator(tokenizer)(examples)
    assert batch["attention_mask"][:, -1].all() and not batch["attention_mask"][0, 0]  # left padding
    assert batch["demographic_embeds"].tolist() == [[0.0] * 4, [1.0] * 4] and batch["examples"] == examples
    with pytest.raises(DataError, match=r"respondent_id=r0, question_id=q: .*longer than max_length=5"):
        RolloutCollator(tokenizer, max_length=5)(examples)
