"""Gradient interference: groups answering oppositely pull a dense LoRA's weights apart (negative cosine)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cuma.config import ExperimentConfig
from cuma.data.collate import SFTCollator
from cuma.data.embeddings import attach_embeddings
from cuma.data.examples import build_examples
from cuma.data.profiles import Profile
from cuma.data.survey import Question, Survey, answers_frame
from cuma.evaluation import cli as interference_cli
from cuma.evaluation.interference import ALL_WEIGHTS, gradient_interference
from cuma.evaluation.interference_plot import plot_interference
from cuma.methods import build_method
from cuma.quick import RandomProfileEncoder
from cuma.tiny import tiny_model, tiny_tokenizer
from cuma.train.loss import answer_token_loss_sum, count_answer_tokens

ENCODER_DIM = 16


def party_survey(opposite: bool, n: int = 12) -> Survey:
    """Two yes/no questions; Democrats answer yes, Republicans no (or yes too, unless ``opposite``)."""
    questions = {
        qid: Question(
            qid, f"Should the government spend more on {qid}?", (1, 0), ("Yes", "No"), ordinal=False
        )
        for qid in ("roads", "parks")
    }
    respondents = {f"r{i}": Profile(party="democrat" if i % 2 else "republican") for i in range(n)}
    rows = {"respondent_id": [], "question_id": [], "code": []}
    for rid, profile in respondents.items():
        for qid in questions:
            rows["respondent_id"].append(rid)
            rows["question_id"].append(qid)
            rows["code"].append(1 if profile["party"] == "democrat" or not opposite else 0)
    return Survey("parties", questions, respondents, answers_frame(rows))


def fitted(method: str, examples, steps: int = 15):
    """The method on a tiny model after a few small Adam steps on every example. Dense LoRA then predicts
    about the compromise between the groups, where their gradients conflict; at initialisation (B = 0,
    probabilities spread over the whole vocabulary) the two gradients are nearly unrelated, and after many
    steps the persona lets it tell the groups apart."""
    tokenizer = tiny_tokenizer()
    config = ExperimentConfig(adapter_overrides={method: {"rank": 4}})
    prepared = build_method(method, tiny_model(), config, encoder=RandomProfileEncoder(ENCODER_DIM))
    optimizer = torch.optim.Adam(prepared.trainable_parameters().values(), lr=3e-3)
    batch = SFTCollator(tokenizer)(examples)
    for _ in range(steps):
        out = prepared(batch["input_ids"], batch["attention_mask"], batch.get("demographic_embeds"))
        loss = answer_token_loss_sum(out.logits, batch["labels"]) / count_answer_tokens(batch["labels"])
        optimizer.zero_grad()
        (loss + out.aux_loss).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return prepared, tokenizer


def test_opposite_groups_give_dense_lora_a_negative_cosine_and_agreeing_groups_a_positive_one():
    results = {}
    for opposite in (True, False):
        examples = build_examples(party_survey(opposite), persona=True)
        prepared, tokenizer = fitted("lora", examples)
        results[opposite] = gradient_interference(prepared, tokenizer, examples, "party", per_group=8)
    conflict, agree = results[True], results[False]
    assert conflict.groups == ("republican", "democrat") and conflict.examples == (8, 8)
    assert conflict.expert_cosine is None  # one expert: the dense adapter
    assert conflict.mean_cosine < -0.3
    assert agree.mean_cosine > 0.3
    np.testing.assert_allclose(np.diag(conflict.cosine), 1.0)
    np.testing.assert_allclose(conflict.cosine, conflict.cosine.T)


def test_cuma_reports_each_expert_and_leaves_the_model_as_it_was(tmp_path):
    examples = build_examples(party_survey(True), persona=True)
    examples = attach_embeddings(examples, RandomProfileEncoder(ENCODER_DIM))
    prepared, tokenizer = fitted("cuma", examples, steps=3)
    prepared.train()
    flags = {name: p.requires_grad for name, p in prepared.named_parameters()}
    before = {name: p.detach().clone() for name, p in prepared.trainable_parameters().items()}
    result = gradient_interference(prepared, tokenizer, examples, "party", per_group=6, batch_size=4)
    experts = prepared.adapter_config.num_experts
    assert result.expert_cosine.shape == (experts, 2, 2) and result.expert_norms.shape == (experts, 2)
    reached = result.expert_norms > 0
    assert reached.any() and np.isfinite(result.mean_cosine)
    for e in range(experts):  # an expert both groups reach has a proper cosine, one they miss has NaN
        cosine = result.expert_cosine[e]
        assert np.isnan(cosine[0, 1]) == (not reached[e].all())
    squared = (result.expert_norms**2).sum(axis=0)
    np.testing.assert_array_less(squared, result.norms**2 * (1 + 1e-6))  # experts are part of all weights
    assert prepared.training
    assert {name: p.requires_grad for name, p in prepared.named_parameters()} == flags
    assert all(p.grad is None for p in prepared.parameters())
    for name, p in prepared.trainable_parameters().items():
        assert torch.equal(p, before[name])
    frame = result.frame()
    assert set(frame["scope"]) == {ALL_WEIGHTS, *(f"expert {e}" for e in range(experts))}
    report = result.to_dict()
    assert report["groups"] == ["republican", "democrat"] and len(report["expert_mean_cosine"]) == experts
    png = plot_interference(result, tmp_path / "interference.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_requests_are_clear_errors():
    tokenizer = tiny_tokenizer()
    examples = build_examples(party_survey(True), persona=True)
    lora = build_method("lora", tiny_model(), ExperimentConfig())
    with pytest.raises(
        ValueError, match=r"field 'country' is in none of the 24 examples; fields: \['party'\]"
    ):
        gradient_interference(lora, tokenizer, examples, "country")
    democrats = [ex for ex in examples if ex.profile["party"] == "democrat"]
    with pytest.raises(ValueError, match=r"1 group\(s\).*at least 2"):
        gradient_interference(lora, tokenizer, democrats, "party")
    with pytest.raises(ValueError, match="has no LoRA experts"):
        gradient_interference(
            build_method("persona", tiny_model(), ExperimentConfig()), tokenizer, examples, "party"
        )
    cuma = build_method("cuma", tiny_model(), ExperimentConfig(), encoder=RandomProfileEncoder(ENCODER_DIM))
    with pytest.raises(ValueError, match="encode the examples' profiles first"):
        gradient_interference(cuma, tokenizer, examples, "party")


def test_the_command_prints_the_cosines_and_writes_the_figure_and_json(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    interference_cli.configure(parser)
    config = Path(__file__).resolve().parents[1] / "configs" / "gss-cuma.yaml"
    argv = ["--config", str(config), "--method", "lora", "--field", "race", "--quick", "--per-group", "2"]
    args = parser.parse_args([*argv, "--out", str(tmp_path), "data.n_train=60", "data.n_test=20"])
    args.func(args)
    printed = capsys.readouterr().out
    assert "lora: gradient cosines by race" in printed and "mean off-diagonal cosine" in printed
    saved = json.loads((tmp_path / "lora-race.json").read_text())
    assert saved["field"] == "race" and set(saved["groups"]) <= {"white", "black", "other"}
    assert (tmp_path / "lora-race.png").stat().st_size > 0
