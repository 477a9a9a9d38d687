"""Demographic profiles and the templates that render them to text.

One rendering feeds both the prompt and the demographic encoder, so the two never disagree.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd


class Profile(Mapping[str, str | None]):
    """An ordered mapping of demographic field -> value; ``None`` means the value is missing."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, object] | None = None, /, **kwargs: object) -> None:
        merged = dict(items or {}, **kwargs)
        self._items: dict[str, str | None] = {
            key: None if is_missing(value) else str(value) for key, value in merged.items()
        }

    def __getitem__(self, key: str) -> str | None:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __repr__(self) -> str:
        return f"Profile({self._items!r})"


def is_missing(value: object) -> bool:
    """None, NaN (Python, NumPy or pandas ``NA``) or a blank string.

    Any other value is an answer, even the text ``"None"`` (a religion) or ``"nan"``: each loader
    names the words its source uses for a missing value.
    """
    if isinstance(value, str):
        return not value.strip()
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, (float, np.floating)) and bool(np.isnan(value))


@dataclass(frozen=True)
class ProfileTemplate:
    """Renders a profile as ``prefix + sep.join(parts) + suffix``.

    Attributes:
        parts: field -> format string with ``{value}`` (a mapping, stored as a tuple of pairs so
            the template stays immutable and hashable); fields not listed are rendered as
            ``"{Field}: {value}"`` in profile order.
        prefix, sep, suffix: text around and between the parts.
        missing: word for a missing value; ``None`` omits the part altogether.
    """

    parts: Mapping[str, str] | tuple[tuple[str, str], ...] = ()
    prefix: str = ""
    sep: str = ", "
    suffix: str = ""
    missing: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", tuple(dict(self.parts).items()))

    def render(self, profile: Mapping[str, object]) -> str:
        parts = dict(self.parts)
        rendered = []
        for name, value in Profile(profile).items():
            if value is None:
                if self.missing is None:
                    continue
                value = self.missing
            fmt = parts.get(name, f"{name.replace('_', ' ').capitalize()}: {{value}}")
            rendered.append(fmt.format(value=value))
        return self.prefix + self.sep.join(rendered) + self.suffix

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields; `from_dict` rebuilds an equal template (adapters save theirs this way)."""
        return {
            "parts": [list(pair) for pair in self.parts],
            "prefix": self.prefix,
            "sep": self.sep,
            "suffix": self.suffix,
            "missing": self.missing,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> ProfileTemplate:
        unknown = sorted(set(values) - {"parts", "prefix", "sep", "suffix", "missing"})
        if unknown:
            raise ValueError(f"unknown ProfileTemplate field(s) {unknown}")
        parts = values.get("parts", ())
        return cls(**{**values, "parts": tuple((str(k), str(v)) for k, v in parts)})


KEY_VALUE = ProfileTemplate()
"""``Country: Norway, Age: 45, ...`` (the PRISM / Community Alignment style)."""

WVB_PERSONA = ProfileTemplate(
    prefix="You are a person from ",
    parts={
        "country": "{value}",
        "age_group": "age group: {value}",
        "gender": "gender: {value}",
        "education": "education: {value}",
        "marital_status": "marital status: {value}",
        "religion": "religion: {value}",
        "ethnicity": "ethnicity: {value}",
        "employment": "employment: {value}",
    },
    suffix=".",
    missing="unknown",
)
"""The WorldValuesBench persona sentence of the paper, with "unknown" instead of "nan"."""
