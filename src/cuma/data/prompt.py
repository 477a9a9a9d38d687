"""How a multiple-choice question and a persona become chat messages, and in which option order.

An example's options are shown in one of `ARRANGEMENTS` and lettered A, B, ... in the order shown. A
shuffled order is drawn from a seed and the example's (respondent, question) alone, so it is the same
whatever the other examples, the batching or the process; the same key with the persona on or off gives
the same order.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from cuma.config import OptionOrder

LETTERS = tuple(string.ascii_uppercase)
SURVEY_SYSTEM = "You are a helpful assistant that answers survey questions honestly."
OPTION_ORDERS: tuple[str, ...] = get_args(OptionOrder)
"""The values ``data.option_order`` allows."""
Arrangement = Literal["fixed", "reversed", "shuffled"]
ARRANGEMENTS: tuple[str, ...] = get_args(Arrangement)
"""How one example's options are shown: the question's order, reversed, or a seeded permutation."""


def option_letters(n: int) -> tuple[str, ...]:
    """``A``, ``B``, ... for ``n`` options."""
    if not 1 <= n <= len(LETTERS):
        raise ValueError(f"cannot letter {n} options: between 1 and {len(LETTERS)} are supported")
    return LETTERS[:n]


def option_permutation(
    arrangement: str, n: int, *, seed: int, respondent_id: str, question_id: str
) -> tuple[int, ...]:
    """The options' order in the prompt: ``permutation[j]`` is the index (in the question's own option
    order) of the option shown at letter j; ``shuffled`` is drawn from ``seed`` and the two ids alone."""
    if arrangement == "fixed":
        return tuple(range(n))
    if arrangement == "reversed":
        return tuple(range(n - 1, -1, -1))
    if arrangement != "shuffled":
        raise ValueError(f"option arrangement must be one of {ARRANGEMENTS}, got {arrangement!r}")
    key = f"{respondent_id}\x1f{question_id}".encode()
    digest = int.from_bytes(hashlib.sha256(key).digest()[:8], "little")
    return tuple(int(i) for i in np.random.default_rng([seed, digest]).permutation(n))


@dataclass(frozen=True)
class ChatFormat:
    """The system prompt, with or without the persona (the defaults are those of chat data).

    Attributes:
        system: system prompt without a persona.
        persona_system: system prompt with a persona; ``{profile}`` is the rendered profile and
            ``{system}`` the plain system prompt. The authors put ``User Profile: ...`` in the
            system prompt of chat data for every method (see docs/design.md), hence the default.
    """

    system: str = "You are a helpful assistant."
    persona_system: str = "User Profile: {profile}"

    def system_prompt(self, profile_text: str, persona: bool) -> str:
        """The persona system prompt when ``persona`` is on and the profile is not empty."""
        if persona and profile_text:
            return self.persona_system.format(profile=profile_text, system=self.system)
        return self.system


@dataclass(frozen=True)
class PromptFormat(ChatFormat):
    """The system prompt and the wording around a multiple-choice question.

    Attributes:
        system: system prompt without a persona (the paper's survey prompt by default).
        persona_system: as in `ChatFormat`; the paper replaces the system prompt with the
            profile sentence, hence the default ``"{profile}"``.
        option: format of one option line, with ``{letter}`` and ``{label}``.
        instruction: sentence after the options (the paper's wording by default).
    """

    system: str = SURVEY_SYSTEM
    persona_system: str = "{profile}"
    option: str = "{letter}. {label}"
    instruction: str = "You can only choose one option."

    def user_prompt(self, question: str, labels: Sequence[str]) -> str:
        letters = option_letters(len(labels))
        pairs = zip(letters, labels, strict=True)
        options = "\n".join(self.option.format(letter=x, label=y) for x, y in pairs)
        return f"{question}\n{options}\n{self.instruction}"

    def messages(
        self, question: str, labels: Sequence[str], profile_text: str, persona: bool
    ) -> tuple[dict[str, str], ...]:
        """System and user messages (the prompt; the assistant answer is added by the example)."""
        return (
            {"role": "system", "content": self.system_prompt(profile_text, persona)},
            {"role": "user", "content": self.user_prompt(question, labels)},
        )
