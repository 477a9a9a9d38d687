"""`JudgeCounts`: what a judge has done, for a run's log and its failure checks."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class JudgeCounts:
    """A snapshot of a judge's counters since it was built.

    Attributes:
        judged: verdicts returned.
        failed: verdicts returned as "failed".
        requests: calls to the judge model (HTTP requests, scored prompts, callable calls).
        retries: requests repeated after a 429, a 5xx, a timeout or a connection error.
        cache_hits: verdicts answered from the cache, without a request.
        budget_exhausted: verdicts failed because ``max_requests`` was spent.
    """

    judged: int = 0
    failed: int = 0
    requests: int = 0
    retries: int = 0
    cache_hits: int = 0
    budget_exhausted: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Counter:
    """Thread-safe counters behind `JudgeCounts` (requests run concurrently)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys((f.name for f in fields(JudgeCounts)), 0)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                self._values[name] += delta

    def snapshot(self) -> JudgeCounts:
        with self._lock:
            return JudgeCounts(**self._values)
