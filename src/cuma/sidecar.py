"""``cuma.json``: what cuma writes beside the files of every saved model folder, and checks on load.

It holds the cuma version, the identity of the base model (so another base is refused), the sha256 of
each weights file (so an altered or torn file is refused, naming it), and for folders written by
`cuma.methods` the method it belongs to. PEFT and transformers ignore the file, so the folder stays
loadable by them as it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cuma.atomic import atomic_write_text

SIDECAR_NAME = "cuma.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_sidecar(folder: str | Path, record: Mapping[str, Any], files: Iterable[str]) -> Path:
    """Write ``record`` plus the cuma version and the sha256 of ``files`` (names inside ``folder``)."""
    from cuma import __version__

    folder = Path(folder)
    data = {
        "cuma_version": __version__,
        **record,
        "files": {name: sha256_file(folder / name) for name in files},
    }
    return atomic_write_text(folder / SIDECAR_NAME, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_sidecar(folder: str | Path, verify: bool = True) -> dict[str, Any]:
    """The sidecar of ``folder``; with ``verify`` every listed file must exist and match its sha256."""
    folder = Path(folder)
    path = folder / SIDECAR_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {SIDECAR_NAME} in {folder}: not a folder saved by cuma")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = dict(data["files"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a valid cuma sidecar: {err!r}") from None
    if verify:
        for name, checksum in files.items():
            target = folder / name
            if not target.is_file():
                raise FileNotFoundError(f"{target} is missing (listed in {path})")
            if sha256_file(target) != checksum:
                raise ValueError(
                    f"{target} does not match the sha256 recorded in {path}: the file was altered"
                )
    return data
