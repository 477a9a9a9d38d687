"""Preference pairs from survey answers, for DPO and GRPO on real data that is available offline.

For a respondent's (profile, question) the chosen response is their own answer letter (the SFT target)
and the rejected one is another option. `PAIRING_MODES`:

- ``all``: one pair per other option;
- ``random``: one other option, drawn from a seed and the (respondent, question) alone, so the draw does
  not depend on which other examples were sampled;
- ``majority``: the question's majority answer among the TRAINING respondents, when it is not the
  respondent's own; an answer equal to the majority gives no pair and is counted. This is the pull toward
  the mean that pluralistic alignment should resist.

Pairs inherit the respondent-level splits of `cuma.data.experiment.prepare_data`: a split's pairs come
from its own respondents only, so no respondent is in two splits and the held-out cells stay held out.
The GRPO prompts are the splits' `SurveyExample`s themselves: `PromptCollator` renders them and
``target_letter`` / ``option_letters`` are what `cuma.train.rewards` scores completions against.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

import pandas as pd

from cuma.config import Pairing
from cuma.data.errors import DataError
from cuma.data.examples import SurveyExample
from cuma.data.experiment import ComparisonData
from cuma.data.profiles import Profile

PAIRING_MODES: tuple[str, ...] = get_args(Pairing)
"""The pairing modes: the values ``dpo.pairing`` allows."""
SAME_AS_MAJORITY = "answer is the training majority"
NO_TRAINING_ANSWERS = "question has no training answers"
ONE_OPTION = "question has a single option"


@dataclass(frozen=True)
class SurveyPreferencePair:
    """A DPO pair on a survey question: the respondent's answer letter over another option's letter.

    Carries what `cuma.data.collate.PreferenceCollator` reads (``prompt_messages``, ``chosen``,
    ``rejected``, ``profile_text``, ``embedding``) plus the codes, for reports.
    """

    respondent_id: str
    question_id: str
    profile: Profile
    profile_text: str
    prompt_messages: tuple[dict[str, str], ...]
    option_letters: tuple[str, ...]
    chosen: str
    rejected: str
    chosen_code: int
    rejected_code: int
    embedding: Any = None

    @property
    def answer(self) -> str:
        """The chosen letter, so the SFT collator can train on the same rows."""
        return self.chosen


@dataclass(frozen=True)
class PairingSummary:
    """How many examples of one split gave how many pairs, and why the others gave none.

    Attributes:
        split: the split's name.
        mode: the pairing mode.
        examples: examples read.
        pairs: pairs made.
        skipped: reason -> examples that gave no pair.
    """

    split: str
    mode: str
    examples: int
    pairs: int
    skipped: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.split} ({self.mode}): {self.examples} examples -> {self.pairs} pairs"]
        lines += [f"  skipped, {reason}: {n}" for reason, n in self.skipped.items()]
        return "\n".join(lines)


@dataclass
class SurveyPreferences:
    """Per split of a `ComparisonData`: DPO pairs, their summary, and the GRPO prompts.

    Attributes:
        mode: the pairing mode.
        pairs: split name -> pairs of that split's respondents.
        summaries: split name -> its `PairingSummary`.
        prompts: split name -> the split's examples (prompt, respondent's answer, option letters).
        majority: question id -> majority answer code among the training respondents.
    """

    mode: str
    pairs: dict[str, list[SurveyPreferencePair]]
    summaries: dict[str, PairingSummary]
    prompts: dict[str, list[SurveyExample]]
    majority: dict[str, int]


def majority_answers(train: Iterable[SurveyExample]) -> dict[str, int]:
    """Question id -> its most common answer code; ties go to the first option, as in the baselines."""
    counts: dict[str, Counter[int]] = {}
    options: dict[str, tuple[int, ...]] = {}
    for ex in train:
        counts.setdefault(ex.question_id, Counter())[ex.target_code] += 1
        options.setdefault(ex.question_id, ex.option_codes)
    return {qid: max(options[qid], key=lambda code, c=c: c[code]) for qid, c in counts.items()}


def _pair(ex: SurveyExample, rejected: int) -> SurveyPreferencePair:
    letter = dict(zip(ex.option_codes, ex.option_letters, strict=True))
    return SurveyPreferencePair(
        respondent_id=ex.respondent_id,
        question_id=ex.question_id,
        profile=ex.profile,
        profile_text=ex.profile_text,
        prompt_messages=ex.prompt_messages,
        option_letters=ex.option_letters,
        chosen=ex.target_letter,
        rejected=letter[rejected],
        chosen_code=ex.target_code,
        rejected_code=rejected,
        embedding=ex.embedding,
    )


def build_pairs(
    examples: Sequence[SurveyExample],
    mode: str,
    *,
    majority: Mapping[str, int] | None = None,
    seed: int = 0,
    split: str = "train",
) -> tuple[list[SurveyPreferencePair], PairingSummary]:
    """Pairs of ``examples`` in one of `PAIRING_MODES`, with the count of examples that gave none.

    Args:
        majority: question id -> majority code from the training respondents (`majority_answers`);
            required by the ``majority`` mode, which never computes it from ``examples`` themselves.
        seed: the ``random`` mode's seed.
        split: the split's name, for the summary.
    """
    if mode not in PAIRING_MODES:
        raise ValueError(f"pairing mode must be one of {PAIRING_MODES}, got {mode!r}")
    if mode == "majority" and majority is None:
        raise ValueError("the majority pairing mode needs the training majority (majority_answers(train))")
    pairs: list[SurveyPreferencePair] = []
    skipped: Counter[str] = Counter()
    for ex in examples:
        others = [code for code in ex.option_codes if code != ex.target_code]
        if not others:
            skipped[ONE_OPTION] += 1
        elif mode == "all":
            pairs += [_pair(ex, code) for code in others]
        elif mode == "random":
            pick = random.Random(f"{seed}\x00{ex.respondent_id}\x00{ex.question_id}").choice(others)
            pairs.append(_pair(ex, pick))
        elif ex.question_id not in majority:
            skipped[NO_TRAINING_ANSWERS] += 1
        elif majority[ex.question_id] == ex.target_code:
            skipped[SAME_AS_MAJORITY] += 1
        else:
            pairs.append(_pair(ex, majority[ex.question_id]))
    summary = PairingSummary(split, mode, len(examples), len(pairs), dict(skipped))
    return pairs, summary


def check_disjoint(splits: Mapping[str, Sequence[SurveyExample]], source: object = None) -> None:
    """Raise if a respondent has examples in two splits (the pairs would leak across them)."""
    owner: dict[str, str] = {}
    for name, rows in splits.items():
        for ex in rows:
            first = owner.setdefault(ex.respondent_id, name)
            if first != name:
                raise DataError(
                    f"respondent is in both the {first} and the {name} split",
                    source=source,
                    column="respondent_id",
                    value=ex.respondent_id,
                )


def survey_preferences(
    data: ComparisonData, mode: str = "majority", *, seed: int = 0, persona: bool = True
) -> SurveyPreferences:
    """Pairs and GRPO prompts for every split of ``data``, each from that split's respondents only.

    The majority is that of ``data.splits["train"]``, the training examples as sampled (``data.n_train``).

    Args:
        mode: one of `PAIRING_MODES`.
        seed: the ``random`` mode's seed.
        persona: prompts with the profile in the system prompt (``data.persona_in_prompt``) or the
            generic one; the demographic embedding is carried either way when the examples have one.
    """
    check_disjoint(data.splits, source=data.survey.source)
    majority = majority_answers(data.splits["train"])
    prompts = {name: data.examples(name, persona) for name in data.splits}
    pairs, summaries = {}, {}
    for name, rows in prompts.items():
        pairs[name], summaries[name] = build_pairs(rows, mode, majority=majority, seed=seed, split=name)
    return SurveyPreferences(mode, pairs, summaries, prompts, majority)


def summary_frame(summaries: Iterable[PairingSummary]) -> pd.DataFrame:
    """One row per summary: split, mode, examples, pairs and one column per skip reason (0 if none)."""
    summaries = list(summaries)
    reasons = list(dict.fromkeys(reason for s in summaries for reason in s.skipped))
    rows = [
        [s.split, s.mode, s.examples, s.pairs, *(s.skipped.get(reason, 0) for reason in reasons)]
        for s in summaries
    ]
    return pd.DataFrame(rows, columns=["split", "mode", "examples", "pairs", *reasons])
