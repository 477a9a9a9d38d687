"""Position bias: each pair judged as (a, b) and as (b, a); only a verdict that survives the swap counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from cuma.judges.base import Judge
from cuma.judges.counts import JudgeCounts
from cuma.judges.verdict import JudgeItem, Verdict, as_items


def combine_orders(forward: Verdict, backward: Verdict) -> Verdict:
    """Merge the verdict on (a, b) with the one on (b, a) (in the swapped frame: its "a" is b).

    Agreement -> that choice; disagreement -> tie; a failure in either order -> failed. ``raw`` keeps
    both as ``{"ab": forward, "ba": backward}``.
    """
    raw = {"ab": forward, "ba": backward}
    if forward.failed or backward.failed:
        orders = (("a-b", forward), ("b-a", backward))
        reasons = [f"{name} order: {v.reason}" for name, v in orders if v.failed]
        return Verdict.failure("; ".join(reasons), raw)
    back = backward.swapped().choice
    return Verdict(forward.choice if forward.choice == back else "tie", raw)


def judge_both_orders(judge: Judge, items: Sequence[JudgeItem | Sequence[Any]]) -> list[Verdict]:
    """Judge every pair in both orders in one batch (so a concurrent judge runs them together)."""
    items = as_items(items)
    verdicts = judge.judge_many(items + [item.swapped() for item in items])
    n = len(items)
    return [combine_orders(f, b) for f, b in zip(verdicts[:n], verdicts[n:], strict=True)]


class BothOrdersJudge(Judge):
    """A judge whose every verdict is ``judge_both_orders`` of the wrapped judge.

    ``counts`` are the wrapped judge's requests, retries and cache hits, with ``judged`` and ``failed``
    counting the combined verdicts.
    """

    def __init__(self, judge: Judge) -> None:
        super().__init__(progress=judge.progress)
        self.inner = judge

    def close(self) -> None:
        self.inner.close()

    @property
    def counts(self) -> JudgeCounts:
        own = self._counter.snapshot()
        return replace(self.inner.counts, judged=own.judged, failed=own.failed)

    def _judge_items(self, items: list[JudgeItem]) -> list[Verdict]:
        return judge_both_orders(self.inner, items)
