"""Dataclass fields that check their values at construction and document themselves once.

A field declares its help text and optional range in its metadata, ``field(default=..., metadata=doc(
"What it is for.", POSITIVE))`` (``metadata={"help": ...}`` as in transformers' ``HfArgumentParser``), so
errors and ``--help`` (`field_docs`) read the same declaration. A dataclass deriving from `Checked`
checks every field on construction: the type exactly as hinted (an ``int`` field refuses ``1.5``, ``"1"``
and ``True``; a ``float`` field takes an int and stores it as a float; a ``tuple`` field takes a YAML
list), then the range, then the class's own rules across fields (`Checked._check`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import textwrap
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from cuma.errors import ConfigError

HELP = "help"
CHECK = "check"


@dataclass(frozen=True)
class Check:
    """A range a field's value must lie in, worded as errors and ``--help`` say it."""

    rule: str
    test: Callable[[Any], bool]


POSITIVE = Check("a positive finite number", lambda v: math.isfinite(v) and v > 0)
NON_NEGATIVE = Check("a finite number >= 0", lambda v: math.isfinite(v) and v >= 0)
FRACTION = Check("in [0, 1)", lambda v: 0 <= v < 1)
AT_LEAST_1 = Check("at least 1", lambda v: v >= 1)
SEED = Check("in [0, 2**32)", lambda v: 0 <= v < 2**32)  # numpy's seed range
NON_EMPTY = Check("non-empty", lambda v: len(v) > 0)


def doc(help: str, check: Check | None = None) -> dict[str, Any]:
    """A field's metadata: ``field(default=..., metadata=doc("What it is for.", POSITIVE))``."""
    return {HELP: help, CHECK: check}


class Checked:
    """Base of self-checking dataclasses: errors name fields as ``<prefix><field>``.

    Declare subclasses ``frozen=True``: a value is checked once, and `dataclasses.replace` checks again.
    """

    prefix: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = check_value(
                getattr(self, f.name), hints[f.name], self.prefix + f.name, f.metadata.get(CHECK)
            )
            object.__setattr__(self, f.name, value)  # frozen dataclasses refuse setattr
        self._check()

    def _check(self) -> None:
        """Rules across fields; a subclass raises `ConfigError` naming them."""


def check_value(value: Any, hint: Any, key: str, check: Check | None = None) -> Any:
    """``value`` converted to ``hint`` (ints to float, lists to tuples), or a `ConfigError` naming ``key``."""
    converted = _convert(value, hint)
    if converted is _MISMATCH:
        raise ConfigError(f"{key}={value!r}: expected {describe(hint)}")
    if check is not None and converted is not None and not check.test(converted):
        raise ConfigError(f"{key}={value!r}: must be {check.rule}")
    return converted


def check_mapping(cls: type, values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """``values`` for fields of dataclass ``cls``, each checked by its declaration, named ``<prefix><field>``.

    For free-form mappings typed by a class that is not built here (``adapter_overrides.<method>``).
    """
    declared = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ConfigError(
            f"unknown field(s) {', '.join(prefix + k for k in unknown)}; known: {', '.join(declared)}"
        )
    hints = _hints(cls)
    return {
        k: check_value(v, hints[k], prefix + k, declared[k].metadata.get(CHECK)) for k, v in values.items()
    }


def describe(hint: Any) -> str:
    """A type hint as errors and ``--help`` show it: ``int | null``, ``list[int]``, ``'left' | 'right'``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return "any"
    if hint is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(describe(a) for a in args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"tuple[{describe(args[0])}, ...]"
    if origin is not None:
        return f"{origin.__name__}[{', '.join(describe(a) for a in args)}]"
    return hint.__name__


def field_docs(cls: type, prefix: str = "", width: int = 100) -> list[str]:
    """Per field ``<prefix><name> (<type>, default <value>; <range>)`` and its help; sections recurse."""
    hints = _hints(cls)
    lines = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            lines += [
                f"  {prefix}{f.name}: {f.metadata[HELP]}",
                *field_docs(hint, f"{prefix}{f.name}.", width),
            ]
            continue
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        check = f.metadata.get(CHECK)
        rule = f"; {check.rule}" if check else ""
        lines.append(f"  {prefix}{f.name} ({describe(hint)}, default {json.dumps(default)}{rule})")
        lines += textwrap.wrap(f.metadata[HELP], width, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return lines


_MISMATCH = object()


def _convert(value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if hint is type(None):
        return value if value is None else _MISMATCH
    if origin is Literal:
        return value if any(type(value) is type(a) and value == a for a in args) else _MISMATCH
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            converted = _convert(value, arg)
            if converted is not _MISMATCH:
                return converted
        return _MISMATCH
    if hint is bool:
        return value if isinstance(value, bool) else _MISMATCH
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _MISMATCH
    if hint is float:
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else _MISMATCH
    if origin is list:
        return _items(value, list, [args[0]] * len(value)) if isinstance(value, list) else _MISMATCH
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return _MISMATCH
        variadic = len(args) == 2 and args[1] is Ellipsis
        if not variadic and len(args) != len(value):
            return _MISMATCH
        return _items(value, tuple, [args[0]] * len(value) if variadic else list(args))
    if origin is dict:
        if not isinstance(value, dict):
            return _MISMATCH
        keys = _items(list(value), list, [args[0]] * len(value))
        items = _items(list(value.values()), list, [args[1]] * len(value))
        return _MISMATCH if _MISMATCH in (keys, items) else dict(zip(keys, items, strict=True))
    if isinstance(hint, type):
        return value if isinstance(value, hint) else _MISMATCH
    raise TypeError(f"unsupported type hint {hint!r}")


def _items(values: list | tuple, kind: type, hints: list[Any]) -> Any:
    converted = [_convert(v, h) for v, h in zip(values, hints, strict=True)]
    return _MISMATCH if any(c is _MISMATCH for c in converted) else kind(converted)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)
