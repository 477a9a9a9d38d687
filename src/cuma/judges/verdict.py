"""`Verdict`, one judge's answer about one pair, and `JudgeItem`, the pair it was asked about."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

CHOICES = ("a", "b", "tie", "failed")
_SWAP = {"a": "b", "b": "a", "tie": "tie", "failed": "failed"}


@dataclass(frozen=True)
class Verdict:
    """Which of two responses the person would prefer, as a judge sees it.

    A failed judgement is its own choice, never a tie or a loss in disguise, so rewards and win-rates
    can exclude and count failures instead of silently scoring them.

    Attributes:
        choice: "a", "b", "tie", or "failed".
        raw: what the judge produced (answer text, verdict-token probabilities, or the two verdicts of a
            both-orders judgement), kept for the record.
        reason: why the judgement failed; set exactly when ``choice == "failed"``.
    """

    choice: Literal["a", "b", "tie", "failed"]
    raw: Any = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.choice not in CHOICES:
            raise ValueError(f"verdict choice must be one of {', '.join(CHOICES)}; got {self.choice!r}")
        if (self.choice == "failed") != (self.reason is not None):
            raise ValueError(f"a verdict has a reason exactly when it failed; got {self!r}")

    @classmethod
    def failure(cls, reason: str, raw: Any = None) -> Verdict:
        return cls("failed", raw, reason)

    @property
    def failed(self) -> bool:
        return self.choice == "failed"

    def swapped(self) -> Verdict:
        """The same verdict with the roles of responses A and B exchanged."""
        return Verdict(_SWAP[self.choice], self.raw, self.reason)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record; nested verdicts (both-orders judgements) become dicts too."""
        return {"choice": self.choice, "raw": _plain(self.raw), "reason": self.reason}


def _plain(value: Any) -> Any:
    if isinstance(value, Verdict):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


class JudgeItem(NamedTuple):
    """One question to a judge: would the person with this profile prefer response A or B?

    ``profile`` is a mapping field -> value (rendered by the judge's prompt template) or a ready
    profile sentence. A plain 4-tuple in the same order is accepted wherever an item is.
    """

    profile: Mapping[str, object] | str
    prompt: str
    response_a: str
    response_b: str

    def swapped(self) -> JudgeItem:
        return self._replace(response_a=self.response_b, response_b=self.response_a)


def as_items(items: Sequence[JudgeItem | Sequence[Any]]) -> list[JudgeItem]:
    """Check every item before any is judged, so bad input fails before a request is spent."""
    checked = []
    for index, item in enumerate(items):
        if isinstance(item, str) or not isinstance(item, Sequence) or len(item) != 4:
            raise TypeError(
                f"judge item {index} must be a JudgeItem or a (profile, prompt, response_a, response_b) "
                f"tuple; got {item!r}"
            )
        item = JudgeItem(*item)
        if not isinstance(item.profile, (Mapping, str)):
            raise TypeError(
                f"judge item {index}: profile must be a mapping or a string; "
                f"got {type(item.profile).__name__}"
            )
        for name in ("prompt", "response_a", "response_b"):
            value = getattr(item, name)
            if not isinstance(value, str):
                raise TypeError(f"judge item {index}: {name} must be a string; got {value!r}")
        checked.append(item)
    return checked
