"""``cuma compare`` on a chat dataset: SFT, DPO (from the SFT run) and GRPO with a judge's reward, then
CA-Acc and the win-rate against the base model, on the Community Alignment and PRISM fixtures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from cuma.compare.run import run_comparison
from cuma.config import ExperimentConfig
from cuma.data.chat_experiment import prepare_chat_data
from cuma.errors import ConfigError
from cuma.judges import CallableJudge
from cuma.train.judge_reward import JudgeReward

FIXTURES = Path(__file__).parent / "fixtures"


def _config(tmp_path: Path, dataset: str, path: Path, methods: list[str]) -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        {
            "model": {"name": "tiny-llama", "encoder": "tiny-random"},
            "data": {
                "dataset": dataset,
                "path": str(path),
                "valid_fraction": 0.2,
                "test_fraction": 0.3,
                "max_length": 512,
            },
            "train": {
                "max_steps": 2,
                "batch_size": 2,
                "lr": 1e-3,
                "precision": "fp32",
                "report_to": [],
                "init_from": "{train_root}/{method}-seed{seed}",
            },
            "dpo": {"lr": 1e-4, "reference": "precomputed"},
            "grpo": {"num_generations": 2, "max_new_tokens": 4},
            "eval": {"batch_size": 4},
            "judge": {"kind": "local", "model": "tiny-llama", "batch_size": 4},
            "preference": {"batch_size": 4, "max_new_tokens": 4, "bootstrap_resamples": 50},
            "methods": methods,
            "seeds": [1],
            "output_dir": str(tmp_path / "report"),
        }
    )


def _prefers_longer(profile: object, prompt: str, a: str, b: str) -> str:
    return "a" if len(a) > len(b) else "b" if len(b) > len(a) else "tie"


def test_community_alignment_comparison_reports_ca_acc_and_win_rates(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        "community-alignment",
        FIXTURES / "community_alignment",
        ["base", "cuma", "cuma@dpo", "cuma@grpo"],
    )
    out = run_comparison(config, judge=CallableJudge(_prefers_longer))
    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "preference"
    runs = {run["method"]: run for run in results["runs"]}
    assert list(runs) == ["base", "cuma", "cuma@dpo", "cuma@grpo"]
    n_choice = len(prepare_chat_data(config.data).choice["test"])
    for run in runs.values():
        assert run["ca_acc"]["n"] == n_choice and run["ca_acc"]["chance"] == pytest.approx(0.25)
    assert runs["base"]["win_rate"] is None and runs["base"]["objective"] is None
    for name in ("cuma", "cuma@dpo", "cuma@grpo"):
        wr = runs[name]["win_rate"]
        assert wr["wins"] + wr["losses"] + wr["ties"] + wr["failed"] == len(
            prepare_chat_data(config.data).sft["test"]
        )
    assert runs["cuma@dpo"]["training"]["lr"] == 1e-4 and runs["cuma"]["training"]["lr"] == 1e-3
    assert "/train/cuma-seed1/checkpoints/" in runs["cuma@dpo"]["training"]["started_from"]
    assert runs["cuma@grpo"]["training"]["objective"] == "grpo"
    report = (out / "report.md").read_text()
    assert "CA-Acc" in report and "CA-WR" in report
    verdicts = pd.read_csv(out / "tables" / "cuma-seed1-win-rate.csv")
    assert set(verdicts["verdict"]) <= {"win", "loss", "tie", "failed"}


def test_prism_comparison_has_no_choice_sets_and_names_its_win_rate(tmp_path: Path) -> None:
    out = run_comparison(
        _config(tmp_path, "prism", FIXTURES / "prism", ["lora"]), judge=CallableJudge(_prefers_longer)
    )
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert runs[0]["ca_acc"] is None and runs[0]["win_rate"] is not None
    assert "PRISM-WR" in (out / "report.md").read_text()


def test_the_judge_reward_scores_wins_ties_losses_and_leaves_failures_out(tmp_path: Path) -> None:
    data = prepare_chat_data(
        _config(tmp_path, "community-alignment", FIXTURES / "community_alignment", ["lora"]).data
    )
    prompts = data.sft["train"][:4]
    seen = []

    def judge(profile, prompt, a, b):
        seen.append((a, b))
        return {"win": "a", "tie": "tie", "loss": "b"}.get(a, "no verdict")

    reward = JudgeReward(CallableJudge(judge))
    out = reward(["win", "tie", "loss", "garbage"], prompts)
    assert out.rewards[:3].tolist() == [1.0, 0.5, 0.0] and math.isnan(out.rewards[3])
    assert [b for _, b in seen] == [ex.answer for ex in prompts]  # against the chosen response
    empty = reward(["", "win", " ", "win"], prompts)
    assert empty.unparsable == 2 and torch.equal(empty.rewards, torch.tensor([0.0, 1.0, 0.0, 1.0]))


def test_a_preference_entry_without_its_starting_model_fails_before_any_training(tmp_path: Path) -> None:
    config = _config(tmp_path, "prism", FIXTURES / "prism", ["cuma", "lora@dpo"])
    with pytest.raises(ConfigError, match=r"methods entry 'lora@dpo'.*list 'lora' \(its SFT run\) before it"):
        run_comparison(config)
    assert not (tmp_path / "report" / "train").exists()
