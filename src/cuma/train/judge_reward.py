"""GRPO's reward from a pairwise judge, for chat prompts (PRISM, Community Alignment).

The judge (`cuma.judges`) is asked whether the person with the prompt's profile would prefer the sampled
completion or the response they chose in the data (the row's ``answer``): 1 for the completion, 0.5 for
a tie, 0 for the chosen response. A failed verdict is NaN, which `cuma.train.grpo_loss.group_advantages`
leaves out of the advantages and counts; past ``grpo.max_failed_share`` the run stops
(`cuma.train.rollouts.sample_answers`). An empty completion is not sent to the judge: it scores 0 and is
counted as unparsable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cuma.judges import Judge, JudgeItem, judge_prompt
from cuma.train.rewards import RewardOutput, check_lengths

SCORES = {"a": 1.0, "tie": 0.5, "b": 0.0, "failed": math.nan}
"""Judge choice -> reward; the completion is response A of every item."""


@dataclass
class JudgeReward:
    """A GRPO reward function (`cuma.train.objectives.RewardFn`) that asks ``judge``."""

    judge: Judge

    def __call__(self, completions: Sequence[str], prompts: Sequence[Any]) -> RewardOutput:
        check_lengths(completions, prompts)
        asked = [i for i, text in enumerate(completions) if text.strip()]
        items = [
            JudgeItem(
                dict(prompts[i].profile),
                judge_prompt(prompts[i].prompt_messages),
                completions[i],
                prompts[i].answer,
            )
            for i in asked
        ]
        rewards = [0.0] * len(completions)
        for i, verdict in zip(asked, self.judge.judge_many(items) if items else [], strict=True):
            rewards[i] = SCORES[verdict.choice]
        return RewardOutput(
            torch.tensor(rewards, dtype=torch.float32), unparsable=len(completions) - len(asked)
        )
