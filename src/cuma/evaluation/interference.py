"""Gradient interference between demographic groups: the paper's "cultural sparsity" mechanism, measured.

The paper explains mean collapse by the gradients of different cultural groups pulling dense parameters
in opposite directions, and motivates routed experts as a way to keep them apart. `gradient_interference`
measures that directly for an adapter (trained, or as built): each group's gradient of the mean SFT
answer loss (`cuma.train.loss.answer_token_loss_sum` on `cuma.data.collate.SFTCollator` batches, as the
trainer computes it, without the router losses) over a seeded sample of its examples, and the pairwise
cosine similarities of those gradients

- over every LoRA weight of the adapter (``cuma_A`` and ``cuma_B`` of every `MixtureLoRALinear`, all
  experts together): for dense LoRA, the shared parameters the groups compete for;
- per expert, for an adapter with several (expert e's rows of ``cuma_A`` and columns of ``cuma_B``; with
  a shared down-projection, its ``cuma_B`` columns only).

A negative cosine means a step that helps one group hurts the other. Routers and the demographic
projection are left out: they are what decides who shares an expert, not what the groups share. The
model runs in eval mode (no dropout), in float32, and its weights, gradients and training mode are as
before afterwards.

A freshly initialised LoRA has ``B = 0``, so its ``cuma_A`` gradient is zero and only ``cuma_B`` speaks;
the cosines are most telling after some training, once the adapter predicts a compromise between the
groups. An expert that a group's tokens never reach gets a zero gradient from it: its cosines with that
group are NaN (no shared direction), and the summaries leave them out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from cuma.data.collate import SFTCollator
from cuma.data.examples import SurveyExample
from cuma.methods import PreparedModel
from cuma.train.loss import answer_token_loss_sum, count_answer_tokens

ALL_WEIGHTS = "all LoRA weights"
"""The scope name of the cosines over every LoRA weight, in `GradientInterference.frame`."""


@dataclass(frozen=True)
class GradientInterference:
    """Per-group answer-loss gradients of one adapter and how they align.

    Attributes:
        method: the method's name.
        field: the profile field whose values are the groups.
        groups: the group values (as text), in order of first appearance.
        examples: examples whose gradients were averaged, per group.
        parameters: weights in each gradient vector over every LoRA weight.
        cosine: [G, G] cosines over every LoRA weight.
        norms: [G] each group's gradient norm over every LoRA weight.
        expert_cosine: [E, G, G] cosines within each expert; None for a single-expert (dense) adapter.
        expert_norms: [E, G] each group's gradient norm within each expert; None likewise.
    """

    method: str
    field: str
    groups: tuple[str, ...]
    examples: tuple[int, ...]
    parameters: int
    cosine: np.ndarray
    norms: np.ndarray
    expert_cosine: np.ndarray | None = None
    expert_norms: np.ndarray | None = None

    @property
    def mean_cosine(self) -> float:
        """The one-number summary: the mean off-diagonal cosine over every LoRA weight."""
        return _mean_off_diagonal(self.cosine)

    @property
    def expert_mean_cosine(self) -> list[float] | None:
        """The mean off-diagonal cosine of each expert (NaN for an expert no two groups reach)."""
        if self.expert_cosine is None:
            return None
        return [_mean_off_diagonal(c) for c in self.expert_cosine]

    def frame(self) -> pd.DataFrame:
        """One row per (scope, group_a, group_b) with its cosine; scope is `ALL_WEIGHTS` or ``expert e``."""
        scopes = [(ALL_WEIGHTS, self.cosine)]
        if self.expert_cosine is not None:
            scopes += [(f"expert {e}", c) for e, c in enumerate(self.expert_cosine)]
        rows = [
            (scope, a, b, float(matrix[i, j]))
            for scope, matrix in scopes
            for i, a in enumerate(self.groups)
            for j, b in enumerate(self.groups)
        ]
        return pd.DataFrame(rows, columns=["scope", "group_a", "group_b", "cosine"])

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GradientInterference:
        """The result `to_dict` wrote (a finished run's record), NaN restored."""

        def array(value: Any) -> np.ndarray | None:
            return None if value is None else np.array(value, dtype=float)

        return cls(
            method=raw["method"],
            field=raw["field"],
            groups=tuple(raw["groups"]),
            examples=tuple(raw["examples"]),
            parameters=raw["parameters"],
            cosine=array(raw["cosine"]),
            norms=array(raw["norms"]),
            expert_cosine=array(raw["expert_cosine"]),
            expert_norms=array(raw["expert_norms"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a JSON report (NaN as None)."""

        def plain(array: np.ndarray | None) -> Any:
            return None if array is None else np.where(np.isnan(array), None, array).tolist()

        return {
            "method": self.method,
            "field": self.field,
            "groups": list(self.groups),
            "examples": list(self.examples),
            "parameters": self.parameters,
            "mean_cosine": _none_if_nan(self.mean_cosine),
            "cosine": plain(self.cosine),
            "norms": plain(self.norms),
            "expert_mean_cosine": None
            if self.expert_mean_cosine is None
            else [_none_if_nan(x) for x in self.expert_mean_cosine],
            "expert_cosine": plain(self.expert_cosine),
            "expert_norms": plain(self.expert_norms),
        }


def gradient_interference(
    prepared: PreparedModel,
    tokenizer: Any,
    examples: Sequence[SurveyExample],
    field: str,
    *,
    per_group: int = 64,
    batch_size: int = 8,
    max_length: int | None = None,
    seed: int = 0,
) -> GradientInterference:
    """Each group's answer-loss gradient over up to ``per_group`` of its ``examples`` and their cosines.

    Args:
        prepared: an adapter method (`cuma.methods.build_method`, `cuma.methods.load_trained`).
        tokenizer: its tokenizer.
        examples: training examples (with their encoder vectors when the method routes on them), shown
            the way the method was trained (persona or not).
        field: the profile field that defines the groups; examples without a value are left out.
        per_group: examples drawn per group (seeded by ``seed``); a smaller group gives all it has.
        batch_size: examples per forward pass.
        max_length: a longer example is an error, as in training.
    """
    if prepared.adapter_config is None:
        raise ValueError(
            f"method {prepared.name!r} ({prepared.spec.kind}) has no LoRA experts; gradient interference is "
            "measured on adapter methods (lora, cuma, mixlora, ...)"
        )
    if per_group < 1:
        raise ValueError(f"per_group must be at least 1, got {per_group}")
    by_group = _groups(examples, field)
    rng = np.random.default_rng(seed)
    samples = {
        group: [rows[i] for i in sorted(rng.choice(len(rows), size=min(per_group, len(rows)), replace=False))]
        for group, rows in by_group.items()
    }
    if prepared.uses_demographics and any(ex.embedding is None for rows in samples.values() for ex in rows):
        raise ValueError(
            f"method {prepared.name!r} routes on the profile: encode the examples' profiles first "
            "(ComparisonData.with_embeddings or cuma.data.embeddings.attach_embeddings)"
        )
    tensors = _lora_tensors(prepared)
    weights = [t for _, t in tensors]
    collator = SFTCollator(tokenizer, max_length=max_length)
    with _measuring(prepared, weights):
        gradients = {
            group: _mean_gradient(prepared, weights, collator, rows, batch_size, f"{field}={group}")
            for group, rows in samples.items()
        }
    groups = list(samples)
    gram, expert_gram = _grams(gradients, groups, tensors, prepared.adapter_config)
    norms = np.sqrt(np.diag(gram))
    return GradientInterference(
        method=prepared.name,
        field=field,
        groups=tuple(groups),
        examples=tuple(len(samples[g]) for g in groups),
        parameters=sum(t.numel() for _, t in tensors),
        cosine=_cosine(gram),
        norms=norms,
        expert_cosine=None if expert_gram is None else np.stack([_cosine(g) for g in expert_gram]),
        expert_norms=None if expert_gram is None else np.sqrt(np.diagonal(expert_gram, axis1=1, axis2=2)),
    )


def _groups(examples: Sequence[SurveyExample], field: str) -> dict[str, list[SurveyExample]]:
    if not any(field in ex.profile for ex in examples):
        known = sorted({name for ex in examples for name in ex.profile})
        raise ValueError(
            f"profile field {field!r} is in none of the {len(examples)} examples; fields: {known}"
        )
    by_group: dict[str, list[SurveyExample]] = {}
    for ex in examples:
        value = ex.profile.get(field)
        if value is not None:
            by_group.setdefault(str(value), []).append(ex)
    if len(by_group) < 2:
        raise ValueError(
            f"profile field {field!r} has {len(by_group)} group(s) among the examples "
            f"({sorted(by_group)}); interference needs at least 2"
        )
    return by_group


def _lora_tensors(prepared: PreparedModel) -> list[tuple[str, torch.nn.Parameter]]:
    """("A" or "B", weight) of the active adapter in every adapted linear, in layer order."""
    tuner = prepared.model.base_model
    adapter = tuner.active_adapters[0]
    return [
        (kind, weights[adapter])
        for layer in tuner.layers.values()
        for kind, weights in (("A", layer.cuma_A), ("B", layer.cuma_B))
    ]


@contextlib.contextmanager
def _measuring(prepared: PreparedModel, tensors: Sequence[torch.nn.Parameter]) -> Iterator[None]:
    """Eval mode and gradients on ``tensors`` only, restored afterwards."""
    was_training = prepared.training
    flags = {p: p.requires_grad for p in prepared.parameters()}
    prepared.eval()
    prepared.requires_grad_(False)
    for tensor in tensors:
        tensor.requires_grad_(True)
    try:
        with torch.enable_grad():
            yield
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
        prepared.train(was_training)


def _mean_gradient(
    prepared: PreparedModel,
    tensors: Sequence[torch.nn.Parameter],
    collator: SFTCollator,
    rows: Sequence[SurveyExample],
    batch_size: int,
    desc: str,
) -> list[torch.Tensor]:
    """The gradient of the mean answer-token loss over ``rows`` with respect to ``tensors`` (float32)."""
    device = next(prepared.parameters()).device
    batches = [collator(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
    tokens = sum(int(count_answer_tokens(batch["labels"])) for batch in batches)
    total = [torch.zeros_like(t, dtype=torch.float32) for t in tensors]
    for batch in tqdm(batches, desc=f"gradients, {desc}", leave=False):
        embeds = batch.get("demographic_embeds")
        out = prepared(
            batch["input_ids"].to(device),
            batch["attention_mask"].to(device),
            demographic_embeds=None if embeds is None else embeds.to(device),
        )
        loss = answer_token_loss_sum(out.logits, batch["labels"].to(device)) / tokens
        for acc, grad in zip(total, torch.autograd.grad(loss, list(tensors), allow_unused=True), strict=True):
            if grad is not None:
                acc += grad.float()
    return total


def _grams(
    gradients: dict[str, list[torch.Tensor]],
    groups: Sequence[str],
    tensors: Sequence[tuple[str, torch.nn.Parameter]],
    config: Any,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Gram matrices of the group gradients: [G, G] over every weight and [E, G, G] within each expert.

    ``cuma_A`` is [E*r, in] (r rows per expert; [r, in] when shared) and ``cuma_B`` [out, E*r].
    """
    experts, rank = config.num_experts, config.rank
    gram = torch.zeros(len(groups), len(groups), dtype=torch.float64)
    expert_gram = torch.zeros(experts, len(groups), len(groups), dtype=torch.float64)
    for k, (kind, _) in enumerate(tensors):
        stacked = torch.stack([gradients[g][k] for g in groups]).double().cpu()  # [G, *shape]
        flat = stacked.reshape(len(groups), -1)
        gram += flat @ flat.T
        if experts == 1 or (kind == "A" and config.shared_a):
            continue
        if kind == "A":
            per = stacked.reshape(len(groups), experts, -1).transpose(0, 1)  # [E, G, r*in]
        else:
            per = stacked.reshape(len(groups), -1, experts, rank).permute(2, 0, 1, 3)
            per = per.reshape(experts, len(groups), -1)  # [E, G, out*r]
        expert_gram += per @ per.transpose(1, 2)
    return gram.numpy(), expert_gram.numpy() if experts > 1 else None


def _cosine(gram: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.diag(gram))
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = gram / np.outer(norms, norms)
    cosine[np.outer(norms, norms) == 0] = np.nan
    return np.clip(cosine, -1.0, 1.0)


def _mean_off_diagonal(matrix: np.ndarray) -> float:
    values = matrix[~np.eye(len(matrix), dtype=bool)]
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def _none_if_nan(value: float) -> float | None:
    return None if np.isnan(value) else value
