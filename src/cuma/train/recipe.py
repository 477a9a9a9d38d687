"""What a run trains on, for its objective: the examples, their collator and the `Objective`, built the
same way by ``cuma train`` and ``cuma compare`` from the experiment's data and config.

* ``sft``: the training split's survey examples, `cuma.data.collate.SFTCollator`.
* ``dpo``: survey-derived preference pairs of the training split (`cuma.data.preferences`,
  ``dpo.pairing``: the respondent's own answer against another option), `PreferenceCollator` labelling
  the answer letter only; with ``dpo.reference=precomputed`` the reference log-probs of every pair are
  computed once from the starting weights (an SFT adapter given as ``train.init_from``, say).
* ``grpo``: the training split's prompts, sampled answers rewarded against the respondent's own answer
  (``grpo.reward``: exact match, or the share of their cell giving the answer, from training data).

A chat dataset (`cuma.data.chat_experiment`) has its own rows: SFT on the chosen responses, DPO on the
(chosen, rejected) pairs with the response and its end-of-turn labelled, GRPO on the prompts with a
judge's verdict against the chosen response as the reward (`cuma.train.judge_reward`). Rows longer than
``data.max_length`` (a GRPO prompt with room for ``grpo.max_new_tokens``) are left out before training,
counted and logged, never truncated.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cuma.config import ExperimentConfig
from cuma.data.chat_experiment import ChatComparisonData
from cuma.data.collate import PreferenceCollator, RolloutCollator, SFTCollator
from cuma.data.experiment import ComparisonData
from cuma.data.render import render_prompt, render_training
from cuma.errors import ConfigError
from cuma.methods import PreparedModel, build_method, get_method, load_trained
from cuma.train.data import ExtrasCollate, WithExtras
from cuma.train.judge_reward import JudgeReward
from cuma.train.layout import starting_model
from cuma.train.objectives import DPO, GRPO, SFT, Objective, precompute_reference
from cuma.train.rewards import CellShares, cell_share_reward, exact_match_reward

logger = logging.getLogger("cuma.train")


def starting_method(
    config: ExperimentConfig, name: str, base_model: Any, encoder: Any, train_root: Path
) -> PreparedModel:
    """Method ``name`` ready to train: fresh (`cuma.methods.build_method`), or, for a preference objective,
    the trained model that ``train.init_from`` names (`cuma.train.layout.starting_model`; in a comparison
    ``{train_root}/{method}-seed{seed}`` is the same method's SFT run), which must be of the same method
    and fit the run's encoder."""
    preference = config.train.objective != "sft"
    if config.train.init_from is None or not preference or not get_method(name).trainable:
        return build_method(name, base_model, config, encoder=encoder)
    folder = starting_model(config.train.init_from, name, config.train.seed, train_root)
    prepared = load_trained(folder, base_model, is_trainable=True)
    if prepared.name != name:
        raise ConfigError(
            f"train.init_from: {folder} holds method {prepared.name!r}, this run trains {name!r}"
        )
    if prepared.uses_demographics and encoder is not None and hasattr(encoder, "check_adapter"):
        encoder.check_adapter(prepared.adapter_config)
    logger.info("%s: starting from %s", name, folder)
    return prepared


@dataclass
class Recipe:
    """The examples of a run, the collator that batches them, and the objective that reads the batches."""

    dataset: Sequence[Any]
    collate_fn: Callable[[list[Any]], dict[str, Any]]
    objective: Objective


def training_recipe(
    config: ExperimentConfig,
    data: ComparisonData,
    tokenizer: Any,
    prepared: PreparedModel,
    device: Any = "cpu",
) -> Recipe:
    """The `Recipe` of ``config.train.objective`` for ``prepared`` (see the module docstring)."""
    persona, max_length = prepared.persona_in_prompt, config.data.max_length
    objective = config.train.objective
    if objective == "sft":
        return Recipe(data.examples("train", persona), SFTCollator(tokenizer, max_length=max_length), SFT())
    if objective == "dpo":
        from cuma.data.preferences import survey_preferences

        preferences = survey_preferences(data, config.dpo.pairing, seed=config.data.seed, persona=persona)
        pairs = preferences.pairs["train"]
        logger.info("%s", preferences.summaries["train"])
        collate = PreferenceCollator(tokenizer, max_length=max_length, include_end_of_turn=False)
        return _dpo_recipe(config, prepared, pairs, collate, device)
    train = data.examples("train", persona)
    if config.grpo.reward == "exact-match":
        reward = exact_match_reward
    else:
        fields = config.grpo.reward_cell_fields or data.survey.profile_fields
        reward = functools.partial(cell_share_reward, shares=CellShares.from_examples(train, fields))
    return Recipe(
        train, RolloutCollator(tokenizer, max_length=max_length), GRPO(config.grpo, tokenizer, reward)
    )


def chat_recipe(
    config: ExperimentConfig,
    data: ChatComparisonData,
    tokenizer: Any,
    prepared: PreparedModel,
    device: Any = "cpu",
    judge: Any = None,
) -> Recipe:
    """The `Recipe` of ``config.train.objective`` on a chat dataset (see the module docstring); GRPO needs
    the ``judge`` (`cuma.judges.Judge`) of its reward."""
    objective, max_length = config.train.objective, config.data.max_length
    if objective == "sft":
        rows = fitting(data.sft["train"], tokenizer, max_length, "sft")
        return Recipe(rows, SFTCollator(tokenizer, max_length=max_length, include_end_of_turn=True), SFT())
    if objective == "dpo":
        pairs = fitting(data.dpo["train"], tokenizer, max_length, "dpo")
        return _dpo_recipe(
            config, prepared, pairs, PreferenceCollator(tokenizer, max_length=max_length), device
        )
    if judge is None:
        raise ConfigError("train.objective=grpo on a chat dataset rewards answers with a judge; none given")
    room = max_length - config.grpo.max_new_tokens
    if room < 1:
        raise ConfigError(
            f"grpo.max_new_tokens={config.grpo.max_new_tokens} leaves no room for a prompt in "
            f"data.max_length={max_length}"
        )
    prompts = fitting(data.sft["train"], tokenizer, room, "grpo")
    return Recipe(
        prompts, RolloutCollator(tokenizer, max_length=room), GRPO(config.grpo, tokenizer, JudgeReward(judge))
    )


def _dpo_recipe(
    config: ExperimentConfig,
    prepared: PreparedModel,
    pairs: Sequence[Any],
    collate: PreferenceCollator,
    device: Any,
) -> Recipe:
    """DPO on ``pairs``: the reference is the adapters switched off, or log-probs precomputed once from the
    starting weights (``dpo.reference``)."""
    if config.dpo.reference == "adapters-off":
        if prepared.spec.kind not in ("adapter", "prefix"):
            raise ConfigError(
                f"dpo.reference='adapters-off': method {prepared.name!r} has no adapters to disable; "
                "set dpo.reference=precomputed"
            )
        return Recipe(pairs, collate, DPO(config.dpo))
    extras = precompute_reference(prepared, pairs, collate, config.eval.batch_size, device)
    return Recipe(WithExtras(pairs, extras), ExtrasCollate(collate), DPO(config.dpo))


def fitting(rows: Sequence[Any], tokenizer: Any, max_length: int, objective: str) -> list[Any]:
    """The rows whose rendering (prompt + response; both sides of a pair; the prompt alone for GRPO)
    fits ``max_length`` tokens; the others are counted and logged, and none left is an error."""
    kept = [row for row in rows if _length(row, tokenizer, objective) <= max_length]
    if len(kept) < len(rows):
        logger.warning(
            "%s: left out %d of %d training rows longer than %d tokens",
            objective,
            len(rows) - len(kept),
            len(rows),
            max_length,
        )
    if not kept:
        raise ConfigError(
            f"every {objective} training row is longer than {max_length} tokens (data.max_length)"
        )
    return kept


def _length(row: Any, tokenizer: Any, objective: str) -> int:
    if objective == "grpo":
        return len(render_prompt(tokenizer, row.prompt_messages))
    sides = [row.chosen, row.rejected] if objective == "dpo" else [row.answer]
    return max(
        len(render_training(tokenizer, row.prompt_messages, text, include_end_of_turn=True).input_ids)
        for text in sides
    )
