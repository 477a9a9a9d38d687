"""The values of a survey spec: how each is checked, and how table cells are compared with them.

`SpecFile` checks the type and shape of one spec file's values; every error is a `DataError` naming the
file and the key path, e.g. ``gss.yaml: demographics.age.bins[2].min: expected a number, got str 'x'``.
`value_key` is the one form in which a table cell and a value the spec names are compared.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cuma.data.errors import DataError

NA_WORDS = frozenset(
    {"NA", "N/A", "n/a", "#N/A", "<NA>", "NaN", "nan", "-nan", "NULL", "null", "None", "none"}
)
"""Words tools write for a missing value (pandas reads them as missing by default; cuma does not)."""

_INTEGER = re.compile(r"[-+]?\d+")
_DECIMAL = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def plain(value: Any) -> Any:
    """NumPy scalars as Python ones, integral floats as int (so 1.0 in a table matches a spec's ``1:``)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def value_key(value: Any) -> Any:
    """The form in which table cells and spec values are compared: a number (int when integral) for
    anything that reads as one, ``1``, ``1.0``, ``"1"`` and ``" 1 "`` alike; stripped text otherwise.
    Booleans become the text ``True``/``False``, so they never match the code 1 or 0."""
    if isinstance(value, str):
        text = value.strip()
        if _INTEGER.fullmatch(text):
            return int(text)
        if _DECIMAL.fullmatch(text):
            return plain(float(text))
        return text
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    return plain(value)


def describe(value: Any) -> str:
    """A value as a message shows it, with its YAML type (``the number 10``, ``a list [1, 2]``)."""
    if value is None:
        return "null (no value)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, Mapping):
        return f"a mapping {dict(value)!r}"
    if isinstance(value, list):
        return f"a list {value!r}"
    return f"{type(value).__name__} {value!r}"


def _quote_hint(value: Any) -> str:
    return "; quote it to mean the text" if isinstance(value, (bool, int, float)) else ""


@dataclass(frozen=True)
class SpecFile:
    """Checks of the values read from one spec file (``path``); each returns the value or raises."""

    path: str

    def error(self, key: str, message: str) -> DataError:
        """A spec mistake, named by file and key path."""
        return DataError(f"{key}: {message}" if key else message, source=self.path)

    def mapping(self, raw: Any, key: str) -> Mapping[Any, Any]:
        if not isinstance(raw, Mapping):
            raise self.error(key, f"expected a mapping, got {describe(raw)}")
        return raw

    def section(self, raw: Mapping[str, Any], key: str) -> Mapping[Any, Any]:
        """An optional mapping under ``key`` (a YAML null counts as not set)."""
        return self.mapping(raw[key], key) if raw.get(key) is not None else {}

    def sequence(self, raw: Any, key: str) -> list[Any]:
        if not isinstance(raw, list):
            raise self.error(key, f"expected a list, got {describe(raw)}")
        return raw

    def text(self, raw: Any, key: str, blank: bool = False) -> str:
        if not isinstance(raw, str):
            raise self.error(key, f"expected text, got {describe(raw)}{_quote_hint(raw)}")
        if not blank and not raw.strip():
            raise self.error(key, "is empty")
        return raw

    def name(self, raw: Any, section: str) -> str:
        """A key that names a field, question or option set."""
        if not isinstance(raw, str) or not raw.strip():
            raise self.error(section, f"a name must be text, got {describe(raw)}{_quote_hint(raw)}")
        return raw

    def keys(self, raw: Mapping[Any, Any], allowed: Sequence[str], key: str) -> None:
        """Every key of ``raw`` is one of ``allowed``."""
        for name in raw:
            if name not in allowed:
                raise self.error(
                    f"{key}.{name}" if key else str(name), f"unknown key; allowed: {list(allowed)}"
                )

    def columns(self, raw: Any, key: str) -> tuple[str, ...]:
        """A column name, or a non-empty list of distinct ones."""
        if not isinstance(raw, list):
            return (self.text(raw, key),)
        if not raw:
            raise self.error(key, "the list of columns is empty")
        columns = tuple(self.text(c, f"{key}[{i}]") for i, c in enumerate(raw))
        if len(set(columns)) != len(columns):
            raise self.error(key, f"a column is listed twice: {list(columns)}")
        return columns

    def value(self, raw: Any, key: str) -> Any:
        """A raw value the spec names (a label key or a missing entry), as `value_key`."""
        if raw is None:
            raise self.error(
                key,
                'is null (YAML for no value); quote it ("null") to mean the text, or leave it out: a blank '
                "cell is always missing",
            )
        if isinstance(raw, bool):
            raise self.error(key, f'is {describe(raw)}; quote it ("{raw}") to mean the text')
        if isinstance(raw, float) and math.isnan(raw):
            raise self.error(key, 'is NaN; quote it ("NaN") to mean the text')
        if not isinstance(raw, (str, int, float)):
            raise self.error(key, f"expected a single value, got {describe(raw)}")
        if isinstance(raw, str) and not raw.strip():
            raise self.error(key, "is blank; a blank cell is always missing")
        return value_key(raw)

    def number(self, raw: Any, key: str) -> float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or math.isnan(raw):
            raise self.error(key, f"expected a number, got {describe(raw)}")
        return float(raw)

    def format_string(self, fmt: str, names: Sequence[str], key: str) -> None:
        """A format string uses only the placeholders it will be given."""
        try:
            fmt.format(**dict.fromkeys(names, ""))
        except (KeyError, IndexError) as err:
            allowed = ", ".join(f"{{{n}}}" for n in names) or "none"
            raise self.error(
                key, f"unknown placeholder {{{err.args[0]}}} in {fmt!r}; allowed: {allowed}"
            ) from None
        except ValueError as err:
            raise self.error(
                key, f"not a valid format string {fmt!r} ({err}); write {{{{ and }}}} for literal braces"
            ) from None
