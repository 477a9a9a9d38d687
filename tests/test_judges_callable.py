"""CallableJudge, and both-orders judging on it."""

import threading

import pytest

from cuma.judges import CallableJudge, JudgeFailureError, check_failure_share, judge_both_orders

PROFILE = {"country": "Peru"}


def prefers(keyword: str):
    def judge(profile, prompt, a, b):
        if (keyword in a) == (keyword in b):
            return "tie"
        return "a" if keyword in a else "b"

    return judge


def test_the_callable_gets_the_inputs_and_its_answers_are_verdicts() -> None:
    seen = []

    def judge(profile, prompt, a, b):
        seen.append((profile, prompt, a, b))
        return {"x": "a", "y": "b", "z": "tie"}[a]

    verdicts = CallableJudge(judge).judge_many(
        [(PROFILE, "q", "x", "-"), (PROFILE, "q", "y", "-"), ("s", "q", "z", "-")]
    )
    assert [v.choice for v in verdicts] == ["a", "b", "tie"]
    assert seen[0] == (PROFILE, "q", "x", "-") and seen[2][0] == "s"


@pytest.mark.parametrize("answer", ["A", "draw", None, 1, ""])
def test_any_other_answer_fails(answer) -> None:
    judge = CallableJudge(lambda *args: answer)
    verdict = judge.judge(PROFILE, "q", "a", "b")
    assert verdict.failed and repr(answer) in verdict.reason and verdict.raw == answer
    assert judge.counts.failed == 1 and judge.counts.requests == 1


def test_an_exception_is_a_counted_failure() -> None:
    def broken(profile, prompt, a, b):
        if a == "boom":
            raise RuntimeError("judge crashed")
        return "a"

    judge = CallableJudge(broken)
    verdicts = judge.judge_many([(PROFILE, "q", "boom", "b"), (PROFILE, "q", "fine", "b")])
    assert verdicts[0].failed and "broken raised RuntimeError: judge crashed" in verdicts[0].reason
    assert verdicts[1].choice == "a" and judge.counts.failed == 1 and judge.counts.judged == 2
    assert check_failure_share(verdicts, max_share=0.5) == 0.5
    with pytest.raises(
        JudgeFailureError, match=r"1 of 2 judge verdicts failed \(50.0%.*1x judge function broken"
    ):
        check_failure_share(verdicts, max_share=0.25)


def test_calls_run_concurrently_when_allowed() -> None:
    barrier = threading.Barrier(3, timeout=5)  # passes only if three calls are in flight together

    def judge(profile, prompt, a, b):
        barrier.wait()
        return "a"

    verdicts = CallableJudge(judge, max_concurrency=3).judge_many(
        [(PROFILE, "q", str(i), "b") for i in range(3)]
    )
    assert [v.choice for v in verdicts] == ["a", "a", "a"]


def test_both_orders_keep_consistent_verdicts_and_tie_inconsistent_ones() -> None:
    items = [(PROFILE, "q", "llama", "alpaca"), (PROFILE, "q", "alpaca", "llama"), (PROFILE, "q", "x", "y")]
    fair = judge_both_orders(CallableJudge(prefers("llama")), items)
    assert [v.choice for v in fair] == ["a", "b", "tie"]
    first_shown = judge_both_orders(CallableJudge(lambda *args: "a"), items)
    assert [v.choice for v in first_shown] == ["tie", "tie", "tie"]
    assert first_shown[0].raw["ab"].choice == "a" and first_shown[0].raw["ba"].choice == "a"


def test_a_failure_in_either_order_fails_the_pair() -> None:
    def fails_when_swapped(profile, prompt, a, b):
        return "a" if a == "first" else "nonsense"

    judge = CallableJudge(fails_when_swapped)
    verdict = judge_both_orders(judge, [(PROFILE, "q", "first", "second")])[0]
    assert verdict.failed and verdict.reason.startswith(
        "b-a order: judge function fails_when_swapped returned"
    )
    assert verdict.raw["ab"].choice == "a"
