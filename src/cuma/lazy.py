"""Lazy package exports: names that a package's ``__init__`` imports from their module on first use.

`cuma`, `cuma.data`, `cuma.train`, `cuma.judges`, `cuma.serve` and `cuma.compare` export this way, so that
``import cuma`` and building the command line (``cuma --help``) load neither torch nor transformers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports each name of ``homes`` (name -> module) when
    it is first asked for; any other name is an ``AttributeError``, as for a plain module."""

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(homes[name]), name)

    return __getattr__
