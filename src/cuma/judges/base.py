"""`Judge`: the one interface of every judge, single and batched."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tqdm.auto import tqdm

from cuma.judges.counts import Counter, JudgeCounts
from cuma.judges.verdict import JudgeItem, Verdict, as_items

T = TypeVar("T")
R = TypeVar("R")


class Judge(ABC):
    """Decides which of two responses the person with a given profile would prefer.

    Subclasses implement ``_judge_items``; a failure of any kind comes back as a ``failed`` verdict
    with its reason, never as an exception mid-batch, and is counted.
    """

    def __init__(self, progress: bool = False) -> None:
        self.progress = progress
        self._counter = Counter()

    @property
    def counts(self) -> JudgeCounts:
        return self._counter.snapshot()

    def close(self) -> None:  # noqa: B027 (a hook: most judges hold nothing open)
        """Release what the judge holds open (connections); nothing for most judges."""

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def judge(
        self, profile: Mapping[str, object] | str, prompt: str, response_a: str, response_b: str
    ) -> Verdict:
        return self.judge_many([JudgeItem(profile, prompt, response_a, response_b)])[0]

    def judge_many(self, items: Sequence[JudgeItem | Sequence[Any]]) -> list[Verdict]:
        """One verdict per item, in order; items are checked before any is judged."""
        checked = as_items(items)
        verdicts = self._judge_items(checked) if checked else []
        self._counter.add(judged=len(verdicts), failed=sum(v.failed for v in verdicts))
        return verdicts

    @abstractmethod
    def _judge_items(self, items: list[JudgeItem]) -> list[Verdict]: ...


def map_bounded(
    fn: Callable[[T], R], items: Sequence[T], max_workers: int, progress: bool = False, desc: str = ""
) -> list[R]:
    """``[fn(x) for x in items]`` with at most ``max_workers`` calls in flight, results in order."""
    if max_workers == 1 or len(items) <= 1:
        return [fn(item) for item in tqdm(items, desc=desc, disable=not progress, leave=False)]
    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        results = pool.map(fn, items)
        return list(tqdm(results, total=len(items), desc=desc, disable=not progress, leave=False))
