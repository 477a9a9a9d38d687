"""The one YAML reader of cuma, for experiment configs, survey specs and command-line override values.

PyYAML implements YAML 1.1, where ``NO`` (Norway's country code) and ``yes`` are booleans and ``1e-4``
is a string. Configs and specs are read with YAML 1.2's core rules instead: only ``true``/``false`` are
booleans, and ``1e-4``, ``.5`` or ``1E3`` are floats. Everything else is PyYAML's safe loader.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and floats."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in ("tag:yaml.org,2002:bool",)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$|^[-+]?\.[0-9_]+$"),
    list("-+0123456789."),
)


class YAMLFileError(ValueError):
    """A YAML file that cannot be read or parsed; the message names the file."""


def parse_yaml(text: str) -> Any:
    """Parse YAML text with the rules above (also used for ``section.field=value`` override values)."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass, so safe


def read_yaml(path: str | Path, what: str = "YAML file") -> Any:
    """Parse the file at ``path``; a missing, unreadable or malformed file is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return parse_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise YAMLFileError(f"{path}: cannot read {what}: {err}") from None
    except yaml.YAMLError as err:
        raise YAMLFileError(f"{path}: not valid YAML: {err}") from None
