"""`CallableJudge`: any Python function as the judge (rules, other libraries, test doubles)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cuma.judges.base import Judge, map_bounded
from cuma.judges.verdict import JudgeItem, Verdict

JudgeFn = Callable[[Mapping[str, object] | str, str, str, str], str]
_ANSWERS = ("a", "b", "tie")


class CallableJudge(Judge):
    """Calls ``fn(profile, prompt, response_a, response_b)``, which returns "a", "b" or "tie".

    Any other return value, or an exception, is a ``failed`` verdict with the reason, so one bad call
    does not end a run; ``check_failure_share`` stops a run whose function keeps failing.

    Args:
        fn: the judging function; it gets the profile as given (mapping or sentence).
        max_concurrency: calls in flight at once (threads); 1 calls ``fn`` from one thread only.
        progress: show a progress bar over each batch.
    """

    def __init__(self, fn: JudgeFn, *, max_concurrency: int = 1, progress: bool = False) -> None:
        if not callable(fn):
            raise TypeError(f"CallableJudge needs a callable; got {fn!r}")
        if max_concurrency < 1:
            raise ValueError(f"CallableJudge max_concurrency must be >= 1; got {max_concurrency}")
        super().__init__(progress=progress)
        self.fn, self.max_concurrency = fn, max_concurrency

    def _judge_items(self, items: list[JudgeItem]) -> list[Verdict]:
        return map_bounded(self._call, items, self.max_concurrency, self.progress, "judging")

    def _call(self, item: JudgeItem) -> Verdict:
        self._counter.add(requests=1)
        name = getattr(self.fn, "__name__", repr(self.fn))
        try:
            answer = self.fn(*item)
        except Exception as err:  # a failed call is a failed verdict, counted, not a crash mid-run
            return Verdict.failure(f"judge function {name} raised {type(err).__name__}: {err}")
        if isinstance(answer, str) and answer in _ANSWERS:
            return Verdict(answer, raw=answer)
        expected = "expected 'a', 'b' or 'tie'"
        return Verdict.failure(f"judge function {name} returned {answer!r}; {expected}", answer)
