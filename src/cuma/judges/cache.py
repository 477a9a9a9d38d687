"""`VerdictCache`: verdicts by key, in memory and optionally in an append-only JSONL file.

Each verdict is one line, flushed as soon as it is known, so an interrupted run keeps every verdict it
was given and the next run asks the judge only for the rest. Only real verdicts are cached: a failure
is retried the next time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path
from typing import Any

from cuma.judges.verdict import Verdict

logger = logging.getLogger(__name__)


def cache_key(**parts: Any) -> str:
    """A stable key for JSON-ready parts (judge identity, template fingerprint, rendered inputs)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class VerdictCache:
    """A thread-safe key -> verdict map, read from and appended to ``path`` when one is given."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._verdicts: dict[str, Verdict] = self._read(self.path) if self.path is not None else {}

    def __len__(self) -> int:
        return len(self._verdicts)

    def get(self, key: str) -> Verdict | None:
        with self._lock:
            return self._verdicts.get(key)

    def put(self, key: str, verdict: Verdict) -> None:
        if verdict.failed:
            raise ValueError(f"failed verdicts are not cached (they are retried next time): {verdict!r}")
        line = json.dumps({"key": key, "choice": verdict.choice, "raw": verdict.raw}, ensure_ascii=False)
        with self._lock:
            self._verdicts[key] = verdict
            if self.path is not None:
                with self.path.open("ab") as handle:
                    handle.write(line.encode("utf-8") + b"\n")

    def _read(self, path: Path) -> dict[str, Verdict]:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            return {}
        complete, newline, partial = path.read_bytes().rpartition(b"\n")
        if partial:
            # A write cut short by an interrupted run: dropped, so the next append starts a fresh line.
            logger.warning("%s: dropping an incomplete last line: %r", path, partial[:80])
            with path.open("r+b") as handle:
                handle.truncate(len(complete + newline))
        verdicts = {}
        for number, line in enumerate(complete.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                verdicts[entry["key"]] = Verdict(entry["choice"], entry.get("raw"))
            except (ValueError, KeyError, TypeError) as err:
                message = f"{path}: line {number} is not a cached verdict ({err}): {line[:200]!r}"
                raise ValueError(message) from None
        logger.info("%s: %d cached verdicts", path, len(verdicts))
        return verdicts
