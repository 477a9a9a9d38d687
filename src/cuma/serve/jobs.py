"""The units of work the micro-batcher queues and the engine runs: generation and option scoring."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import ClassVar

OnText = Callable[[int, str, str | None], None]
"""Called from the inference thread with (choice index, new text, finish reason or None)."""


@dataclass(frozen=True)
class Sampling:
    """OpenAI's sampling parameters; temperature 0 is greedy decoding."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class ChoiceResult:
    text: str
    finish_reason: str
    completion_tokens: int


@dataclass(eq=False)
class GenerationJob:
    """One completion request: ``n`` rows sharing a prompt and a profile.

    Attributes:
        prompt_ids: the prompt's token ids.
        profile_text: the rendered profile, or None for a model that reads no profile.
        sampling: temperature, top_p and seed.
        max_tokens: most tokens per choice.
        n: choices to generate (one batch row each).
        stop: stop sequences, not included in the text.
        on_text: streaming callback, or None when only the final result is wanted.
    """

    prompt_ids: list[int]
    profile_text: str | None
    sampling: Sampling
    max_tokens: int
    n: int = 1
    stop: tuple[str, ...] = ()
    on_text: OnText | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def rows(self) -> int:
        return self.n

    @property
    def batch_key(self) -> Hashable:
        """Jobs with equal keys may share a ``generate`` call.

        Sampling parameters apply to the whole call. A seeded sampled request runs alone, since its
        random draws would otherwise depend on what else is in the batch; greedy rows need no seed.
        """
        if self.sampling.greedy:
            return ("greedy",)
        if self.sampling.seed is not None:
            return ("seeded", id(self))
        return ("sample", self.sampling.temperature, self.sampling.top_p)


@dataclass(eq=False)
class ScoreJob:
    """One option-probability request: a single forward pass over the prompt."""

    prompt_ids: list[int]
    profile_text: str | None
    option_token_ids: list[int]
    cancelled: threading.Event = field(default_factory=threading.Event)

    rows: ClassVar[int] = 1
    batch_key: ClassVar[Hashable] = ("score",)


Job = GenerationJob | ScoreJob
