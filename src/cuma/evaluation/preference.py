"""Preference evaluation: its settings, and the win-rate of a method's responses against a baseline's.

The win-rate follows the paper's protocol: one response per prompt from the method and one from the
baseline (the base model, or any other method), both from the same prompt messages as the data loader
built them; a `cuma.judges.Judge` decides per prompt which of the two the person with that profile would
prefer, in both orders by default (`cuma.judges.judge_both_orders`: orders that disagree are a tie).
From the method's side each verdict is a win, loss, tie or failed, and `cuma.metrics.preference.win_rate`
gives W / (W + L + T) and (W + T/2) / (W + L + T) with bootstrap intervals over prompts; failed verdicts
are counted and left out, never scored as ties.

Generating and judging are two steps joined by the per-prompt table (`generate_pairs`, `judge_pairs`),
so the caller can save the responses and judge them again, with another judge, without generating them
again; `evaluate_win_rate` runs both. CA-Acc, the other preference evaluation, is `cuma.evaluation.choice`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from cuma.config import PreferenceEvalConfig
from cuma.data.collate import PromptCollator
from cuma.errors import ConfigError
from cuma.judges import (
    BothOrdersJudge,
    Judge,
    JudgeFailureError,
    JudgeItem,
    Verdict,
    judge_both_orders,
    judge_prompt,
)
from cuma.methods import PreparedModel
from cuma.metrics.bootstrap import BootstrapConfig
from cuma.metrics.preference import WinRate, group_win_rates, win_rate

ID_FIELDS = ("conversation_id", "annotator_id", "turn", "respondent_id", "question_id")
"""Attributes that identify a prompt; the table gets a column for each one every prompt has."""

PAIR_COLUMNS = ("prompt", "profile", "profile_text", "response", "baseline_response")
"""Columns of the table `generate_pairs` writes (after the id columns) and `judge_pairs` reads."""

OUTCOMES = {"a": "win", "b": "loss", "tie": "tie", "failed": "failed"}
"""Judge choice -> the method's outcome: the method's response is response A of every judge item."""


def bootstrap_settings(config: PreferenceEvalConfig) -> BootstrapConfig:
    """The bootstrap of the intervals that ``config`` asks for."""
    return BootstrapConfig(config.bootstrap_resamples, config.confidence, config.bootstrap_seed)


@dataclass(frozen=True)
class WinRateEvaluation:
    """What `judge_pairs` finds.

    Attributes:
        win_rate: counts, W/(W+L+T), (W+T/2)/(W+L+T) and their bootstrap intervals over prompts.
        groups: per (profile field, group) counts and rates (`cuma.metrics.preference.group_win_rates`,
            without intervals: small groups have too few prompts for them).
        table: one row per prompt: the id columns, `PAIR_COLUMNS`, ``verdict`` (win, loss, tie or
            failed, the method's side), ``reason`` (why it failed, else None) and ``raw`` (the judge's
            output, JSON-ready; both orders' verdicts when judged in both).
    """

    win_rate: WinRate
    groups: pd.DataFrame
    table: pd.DataFrame

    @property
    def failed(self) -> int:
        """Prompts whose verdict failed; they are in no rate."""
        return self.win_rate.failed


@contextmanager
def inference(model: nn.Module) -> Iterator[torch.device]:
    """Eval mode and no autograd for the block, the model's training flag restored after; yields the
    device of its parameters (CPU for a model without any)."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield next(model.parameters(), torch.empty(0)).device
    finally:
        model.train(was_training)


def generate_responses(
    prepared: PreparedModel,
    tokenizer: Any,
    prompts: Sequence[Any],
    config: PreferenceEvalConfig,
    *,
    desc: str = "generating",
) -> list[str]:
    """One response per prompt, in order, from ``prepared.model.generate``.

    Every prompt is rendered and checked (``config.max_length``; the profile's vector for a method that
    routes on it) before the first one is generated; batches are left-padded and longest first. A
    profile-routed method gets each row's ``embedding`` as its ``demographic_embeds``. A response ends at
    the first end-of-sequence token, the tokenizer's or the model's generation config's (generation stops
    at either).

    Args:
        prompts: anything with ``prompt_messages``, ``profile_text`` and ``embedding``
            (`cuma.data.chat.ChatExample`, `cuma.data.examples.SurveyExample`).
    """
    if not prompts:
        raise ValueError(f"{desc}: no prompts to generate for")
    collator = PromptCollator(
        tokenizer, padding_side="left", max_length=config.max_length, demographics=prepared.uses_demographics
    )
    rows = [collator.encode(ex) for ex in tqdm(prompts, desc="rendering", leave=False)]
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].input_ids))
    stops = _stop_ids(prepared, tokenizer)
    settings: dict[str, Any] = {
        "max_new_tokens": config.max_new_tokens,
        "do_sample": config.do_sample,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": sorted(stops),
    }
    if config.do_sample:
        settings["temperature"] = config.temperature
        torch.manual_seed(config.sample_seed)
    texts: list[str] = [""] * len(rows)
    with inference(prepared) as device, tqdm(total=len(rows), desc=desc, unit="prompt", leave=False) as bar:
        for start in range(0, len(order), config.batch_size):
            chunk = order[start : start + config.batch_size]
            batch = collator.collate([rows[i] for i in chunk])
            embeds = batch.get("demographic_embeds")
            routing = {} if embeds is None else {"demographic_embeds": embeds.to(device)}
            sequences = prepared.model.generate(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                **settings,
                **routing,
            )
            new_tokens = sequences[:, batch["input_ids"].shape[1] :].tolist()
            for i, tokens in zip(chunk, new_tokens, strict=True):
                texts[i] = _decode(tokenizer, tokens, stops)
            bar.update(len(chunk))
    return texts


def _stop_ids(prepared: PreparedModel, tokenizer: Any) -> set[int]:
    generation = getattr(prepared.model, "generation_config", None)
    ids = [tokenizer.eos_token_id, getattr(generation, "eos_token_id", None)]
    flat = [i for x in ids for i in (x if isinstance(x, list | tuple) else [x])]
    return {int(i) for i in flat if i is not None}


def _decode(tokenizer: Any, tokens: list[int], stops: set[int]) -> str:
    end = next((k for k, token in enumerate(tokens) if token in stops), len(tokens))
    return tokenizer.decode(tokens[:end], skip_special_tokens=True).strip()


def generate_pairs(
    method: PreparedModel,
    baseline: PreparedModel,
    tokenizer: Any,
    prompts: Sequence[Any],
    config: PreferenceEvalConfig,
) -> pd.DataFrame:
    """The method's and the baseline's response to every prompt, as the table `judge_pairs` reads
    (`pair_table`). Both models share the tokenizer and see the same prompt messages."""
    responses = generate_responses(method, tokenizer, prompts, config, desc=f"generating ({method.name})")
    baseline_responses = generate_responses(
        baseline, tokenizer, prompts, config, desc=f"generating ({baseline.name})"
    )
    return pair_table(prompts, responses, baseline_responses)


def pair_table(
    prompts: Sequence[Any], responses: Sequence[str], baseline_responses: Sequence[str]
) -> pd.DataFrame:
    """Columns: the `ID_FIELDS` every prompt has, then `PAIR_COLUMNS`: ``prompt`` (`judge_prompt`),
    ``profile`` (dict field -> value), ``profile_text``, ``response`` (the method's) and
    ``baseline_response``; a comparison generates the baseline's responses once and pairs every
    method's with them."""
    if not len(prompts) == len(responses) == len(baseline_responses):
        raise ValueError(
            f"{len(prompts)} prompts, {len(responses)} responses and {len(baseline_responses)} baseline "
            "responses: need one of each per prompt"
        )
    ids = [key for key in ID_FIELDS if all(hasattr(ex, key) for ex in prompts)]
    return pd.DataFrame(
        {
            **{key: [getattr(ex, key) for ex in prompts] for key in ids},
            "prompt": [judge_prompt(ex.prompt_messages) for ex in prompts],
            "profile": [dict(ex.profile) for ex in prompts],
            "profile_text": [ex.profile_text for ex in prompts],
            "response": list(responses),
            "baseline_response": list(baseline_responses),
        }
    )


def judge_pairs(judge: Judge, table: pd.DataFrame, config: PreferenceEvalConfig) -> WinRateEvaluation:
    """Judge every row of a `generate_pairs` table (the method's response as A) and compute the
    win-rates; raises ``JudgeFailureError`` when no verdict is usable."""
    missing = [name for name in PAIR_COLUMNS if name not in table.columns]
    if missing:
        raise ValueError(f"the response table lacks the columns {missing}; it has {list(table.columns)}")
    if table.empty:
        raise ValueError("the response table has no rows to judge")
    profiles = list(table["profile"])
    fields = resolve_group_fields(profiles, config)
    items = [
        JudgeItem(profile, prompt, response, baseline)
        for profile, prompt, response, baseline in zip(
            profiles, table["prompt"], table["response"], table["baseline_response"], strict=True
        )
    ]
    both = config.judge_both_orders and not isinstance(judge, BothOrdersJudge)
    verdicts = judge_both_orders(judge, items) if both else judge.judge_many(items)
    outcomes = [OUTCOMES[v.choice] for v in verdicts]
    if all(v.failed for v in verdicts):
        raise JudgeFailureError(f"all {len(verdicts)} judge verdicts failed; commonest: {_reasons(verdicts)}")
    judged = table.assign(
        verdict=outcomes,
        reason=[v.reason for v in verdicts],
        raw=[v.to_dict()["raw"] for v in verdicts],
    )
    return WinRateEvaluation(
        win_rate=win_rate(outcomes, bootstrap=bootstrap_settings(config)),
        groups=group_win_rates(outcomes, profiles, fields),
        table=judged,
    )


def _reasons(verdicts: Sequence[Verdict]) -> str:
    counts = Counter(v.reason for v in verdicts if v.failed)
    return "; ".join(f"{count}x {reason}" for reason, count in counts.most_common(3))


def resolve_group_fields(profiles: Sequence[Mapping[str, object]], config: PreferenceEvalConfig) -> list[str]:
    """``config.group_fields``, or every field of the profiles in order of first appearance; a field
    that some profile lacks is a ``ConfigError`` naming the first such prompt."""
    if config.group_fields is None:
        return list(dict.fromkeys(name for profile in profiles for name in profile))
    for index, profile in enumerate(profiles):
        absent = [name for name in config.group_fields if name not in profile]
        if absent:
            raise ConfigError(
                f"preference.group_fields={config.group_fields!r}: prompt {index} has no profile field "
                f"{absent[0]!r} (its fields: {list(profile)})"
            )
    return list(config.group_fields)


def evaluate_win_rate(
    method: PreparedModel,
    baseline: PreparedModel,
    tokenizer: Any,
    prompts: Sequence[Any],
    judge: Judge,
    config: PreferenceEvalConfig,
) -> WinRateEvaluation:
    """`generate_pairs` then `judge_pairs`; the group fields are checked before anything is generated.

    To keep the responses when judging fails, call the two steps and save the table in between.
    """
    resolve_group_fields([ex.profile for ex in prompts], config)
    return judge_pairs(judge, generate_pairs(method, baseline, tokenizer, prompts, config), config)
