"""Verifiable survey rewards for GRPO, so it runs end to end offline on real data without a judge.

Each reward scores one completion against its prompt, a `cuma.data.examples.SurveyExample` (expand the
prompts to one per completion first). A completion without an option letter `parse_letter` can read gets
reward 0, never NaN (NaN means a failed judge, which GRPO leaves out of its advantages), and is counted.

- `exact_match_reward`: 1 when the letter is the respondent's own answer, else 0.
- `cell_share_reward`: the share of the respondent's demographic cell (their values on configurable
  profile fields) that gave that answer in the TRAINING data (`CellShares`); a cell with no training
  answer to the question falls back to the population share, and is counted.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from cuma.data.examples import SurveyExample

_ANSWER = re.compile(r"\b(?i:answer)\b(?:\s+(?i:is))?\s*[:=\-]?\s*[(\[*\s]*([A-Z])(?![A-Za-z0-9])")
_LEADING = re.compile(r"^[\s(\[*\"']*([A-Z])[\s*\"']*(?:$|[.)\]:,\-\n])")


def parse_letter(text: str, letters: Sequence[str]) -> str | None:
    """The option letter a completion gives, or None.

    Reads ``B``, ``B.``, ``(B)``, ``**B**``, ``B) Agree``, ``B`` alone on the first line, ``Answer: B``
    and ``The answer is B``; a capital that starts a sentence (``A lot of ...``) is not a letter, nor is
    one outside ``letters``.
    """
    match = _ANSWER.search(text) or _LEADING.match(text)
    if match is None or match.group(1) not in letters:
        return None
    return match.group(1)


@dataclass(frozen=True)
class RewardOutput:
    """Rewards of a batch of completions and what could not be scored normally.

    Attributes:
        rewards: float32 [N], one per completion, never NaN.
        unparsable: completions without a readable option letter (reward 0).
        fallback: completions scored with the population share because their cell had no training
            answer to the question (`cell_share_reward` only).
    """

    rewards: torch.Tensor
    unparsable: int
    fallback: int = 0


def check_lengths(completions: Sequence[str], prompts: Sequence[SurveyExample]) -> None:
    if len(completions) != len(prompts):
        raise ValueError(
            f"{len(completions)} completions for {len(prompts)} prompts; repeat each prompt once per "
            "completion (cuma.train.grpo_loss.expand_to_generations)"
        )


def exact_match_reward(completions: Sequence[str], prompts: Sequence[SurveyExample]) -> RewardOutput:
    """1.0 where the completion's letter is the respondent's answer, 0.0 otherwise (unparsable included)."""
    check_lengths(completions, prompts)
    letters = [parse_letter(text, ex.option_letters) for text, ex in zip(completions, prompts, strict=True)]
    rewards = [float(letter == ex.target_letter) for letter, ex in zip(letters, prompts, strict=True)]
    return RewardOutput(torch.tensor(rewards, dtype=torch.float32), unparsable=letters.count(None))


@dataclass
class CellShares:
    """Answer counts per (question, cell) and per question, from training examples only.

    A cell is the tuple of a respondent's values on ``fields``; a missing value (None) is a value of its
    own, as in the cell-majority baseline of `cuma.reference_baselines`.

    Attributes:
        fields: the profile fields that define a cell.
        cells: (question id, cell) -> answer code -> count.
        population: question id -> answer code -> count.
    """

    fields: tuple[str, ...]
    cells: dict[tuple[str, tuple[str | None, ...]], Counter[int]] = field(default_factory=dict)
    population: dict[str, Counter[int]] = field(default_factory=dict)

    @classmethod
    def from_examples(cls, train: Iterable[SurveyExample], fields: Sequence[str]) -> CellShares:
        """Counts of the training respondents' answers; pass the training split only."""
        if not fields:
            raise ValueError("cell fields must name at least one profile field")
        shares = cls(tuple(fields))
        for ex in train:
            key = (ex.question_id, shares.cell(ex))
            shares.cells.setdefault(key, Counter())[ex.target_code] += 1
            shares.population.setdefault(ex.question_id, Counter())[ex.target_code] += 1
        if not shares.population:
            raise ValueError("no training examples to count cell shares from")
        return shares

    def cell(self, example: SurveyExample) -> tuple[str | None, ...]:
        missing = [name for name in self.fields if name not in example.profile]
        if missing:
            raise KeyError(
                f"respondent {example.respondent_id}: profile has no field(s) {missing} "
                f"(cell fields {list(self.fields)}; profile fields {list(example.profile)})"
            )
        return tuple(example.profile[name] for name in self.fields)

    def share(self, example: SurveyExample, code: int) -> tuple[float, bool]:
        """Share of the example's cell giving ``code`` to its question, and whether it fell back."""
        if example.question_id not in self.population:
            raise KeyError(f"question {example.question_id!r} has no training answers to take shares from")
        counts = self.cells.get((example.question_id, self.cell(example)))
        fell_back = counts is None
        counts = self.population[example.question_id] if fell_back else counts
        return counts[code] / counts.total(), fell_back


def cell_share_reward(
    completions: Sequence[str], prompts: Sequence[SurveyExample], shares: CellShares
) -> RewardOutput:
    """The training share of the respondent's cell that gave the completion's answer (0 if unparsable)."""
    check_lengths(completions, prompts)
    rewards, unparsable, fallback = [], 0, 0
    for text, ex in zip(completions, prompts, strict=True):
        letter = parse_letter(text, ex.option_letters)
        if letter is None:
            rewards.append(0.0)
            unparsable += 1
            continue
        value, fell_back = shares.share(ex, ex.option_codes[ex.option_letters.index(letter)])
        rewards.append(value)
        fallback += fell_back
    return RewardOutput(torch.tensor(rewards, dtype=torch.float32), unparsable, fallback)
