"""Where a model is read from: an existing local directory, or a Hugging Face hub id ``org/name``.

Anything that looks like a local path but is not an existing directory is an error here, so a typo in
a path is reported as such instead of as a failed (or, offline, impossible) hub download.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def resolve_model_source(name: str, what: str, aliases: Sequence[str] = ()) -> str:
    """``name`` as an existing directory (``~`` expanded), or unchanged if it reads as a hub id.

    Args:
        name: what the user gave.
        what: the kind of model, for the error message ("base model", "demographic encoder").
        aliases: built-in names the caller also accepts, listed in the error message.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise NotADirectoryError(f"{what} {name!r} is a file, not a model directory")
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") != 1:
        known = f"; built-in aliases: {', '.join(aliases)}" if aliases else ""
        raise FileNotFoundError(
            f"{what} {name!r} is neither an existing model directory nor a hub id of the form org/name{known}"
        )
    return name
