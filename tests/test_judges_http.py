"""HTTPJudge against a real chat-completions server on 127.0.0.1 (tests/judge_server.py)."""

from collections.abc import Iterator

import pytest

from cuma.errors import ConfigError
from cuma.judges import (
    BUDGET_EXHAUSTED,
    HTTPJudge,
    JudgeConfig,
    JudgeFailureError,
    build_judge,
    check_failure_share,
    judge_both_orders,
)
from judge_server import JudgeServer, Reply, free_port, prefer

PROFILE = {"country": "Norway", "age": "45", "religion": None}


@pytest.fixture(scope="module")
def running() -> Iterator[JudgeServer]:
    with JudgeServer() as server:
        yield server


@pytest.fixture
def server(running: JudgeServer) -> JudgeServer:
    running.reset()
    return running


def config(server_or_url: JudgeServer | str, **overrides) -> JudgeConfig:
    base_url = server_or_url if isinstance(server_or_url, str) else server_or_url.base_url
    settings = dict(kind="http", base_url=base_url, model="judge-model", backoff_s=0.001, timeout_s=5.0)
    return JudgeConfig(**{**settings, **overrides})


def items(*pairs: tuple[str, str]) -> list[tuple]:
    return [(PROFILE, f"Question {i}?", a, b) for i, (a, b) in enumerate(pairs)]


def test_verdicts_are_parsed_from_the_answers(server: JudgeServer) -> None:
    server.policy = prefer("fjord")
    judge = HTTPJudge(config(server))
    verdicts = judge.judge_many(items(("a fjord trip", "a city trip"), ("a city", "a fjord"), ("x", "y")))
    assert [v.choice for v in verdicts] == ["a", "b", "tie"]
    assert verdicts[0].raw == "The person would prefer [[A]]."
    bodies = [request["body"] for request in server.requests]  # in any order: requests run concurrently
    assert all(body["model"] == "judge-model" and body["temperature"] == 0 for body in bodies)
    users = sorted(body["messages"][-1]["content"] for body in bodies)
    assert all("Country: Norway, Age: 45\n" in user and "Religion" not in user for user in users)
    assert [f"Question {i}?" in user for i, user in enumerate(users)] == [True] * 3
    assert judge.counts.requests == 3 and judge.counts.judged == 3 and judge.counts.failed == 0


def test_both_orders_agree_with_a_fair_judge_and_tie_a_position_biased_one(server: JudgeServer) -> None:
    pairs = items(("fjord", "city"), ("city", "fjord"))
    server.policy = prefer("fjord")
    fair = judge_both_orders(HTTPJudge(config(server)), pairs)
    assert [v.choice for v in fair] == ["a", "b"]
    assert fair[0].raw["ab"].choice == "a" and fair[0].raw["ba"].choice == "b"
    assert len(server.requests) == 4
    server.policy = lambda body: Reply("[[A]]")  # always the first response shown
    biased = build_judge(config(server, both_orders=True)).judge_many(pairs)
    assert [v.choice for v in biased] == ["tie", "tie"]
    assert biased[1].to_dict()["raw"]["ba"]["choice"] == "a"


def test_500s_are_retried_with_exponential_backoff(server: JudgeServer) -> None:
    server.script.extend([Reply(status=500), Reply(status=503), Reply("[[B]]")])
    waits: list[float] = []
    judge = HTTPJudge(config(server, backoff_s=0.01, max_retries=3), sleep=waits.append)
    assert judge.judge(PROFILE, "Q?", "x", "y").choice == "b"
    assert waits == [0.01, 0.02]
    assert len(server.requests) == 3 and judge.counts.retries == 2 and judge.counts.requests == 3


@pytest.mark.parametrize(("max_backoff_s", "expected"), [(60.0, [7.0]), (0.5, [0.5])])
def test_429_waits_for_retry_after(server: JudgeServer, max_backoff_s: float, expected: list[float]) -> None:
    server.script.extend([Reply(status=429, headers={"Retry-After": "7"}), Reply("[[A]]")])
    waits: list[float] = []
    judge = HTTPJudge(config(server, max_backoff_s=max_backoff_s), sleep=waits.append)
    assert judge.judge(PROFILE, "Q?", "x", "y").choice == "a"
    assert waits == expected


def test_a_timeout_is_retried(server: JudgeServer) -> None:
    server.script.extend([Reply("[[A]]", delay_s=1.0), Reply("[[B]]")])
    judge = HTTPJudge(config(server, timeout_s=0.2))
    assert judge.judge(PROFILE, "Q?", "x", "y").choice == "b"
    assert len(server.requests) == 2 and judge.counts.retries == 1


def test_persistent_500s_fail_with_the_reason(server: JudgeServer) -> None:
    server.policy = lambda body: Reply(status=502, body="upstream down")
    verdict = HTTPJudge(config(server, max_retries=2)).judge(PROFILE, "Q?", "x", "y")
    assert verdict.failed
    assert "HTTP 502" in verdict.reason and "upstream down" in verdict.reason
    assert "gave up after 3 attempts" in verdict.reason and len(server.requests) == 3


def test_a_refused_connection_fails_after_the_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    judge = HTTPJudge(config(url, max_retries=2))
    verdicts = judge.judge_many(items(("x", "y"), ("u", "v")))
    assert all(v.failed for v in verdicts)
    assert f"cannot reach {url}/chat/completions" in verdicts[0].reason
    assert "gave up after 3 attempts" in verdicts[0].reason
    assert judge.counts.requests == 6 and judge.counts.failed == 2
    with pytest.raises(JudgeFailureError, match=r"2 of 2 judge verdicts failed.*cannot reach"):
        check_failure_share(verdicts, max_share=0.5)


def test_the_request_budget_fails_the_rest(server: JudgeServer) -> None:
    judge = HTTPJudge(config(server, max_requests=2, max_concurrency=3))
    verdicts = judge.judge_many(items(("a", "b"), ("c", "d"), ("e", "f"), ("g", "h")))
    failed = [v for v in verdicts if v.failed]
    assert len(server.requests) == 2 and len(failed) == 2
    assert {v.reason for v in failed} == {BUDGET_EXHAUSTED}
    assert judge.counts.budget_exhausted == 2 and judge.counts.requests == 2


def test_the_budget_counts_retries(server: JudgeServer) -> None:
    server.script.extend([Reply(status=500), Reply(status=500), Reply("[[A]]")])
    verdict = HTTPJudge(config(server, max_requests=2)).judge(PROFILE, "Q?", "x", "y")
    assert verdict.reason == BUDGET_EXHAUSTED and "HTTP 500" in verdict.raw
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply("I would pick A."), "no verdict token"),
        (Reply("[[A]] or maybe [[B]]"), "conflicting verdict tokens [[A]], [[B]]"),
        (Reply("[[Tie]]"), "no verdict token"),
        (Reply(None), "no text"),
        (Reply(body="not json"), "malformed chat-completions answer"),
        (Reply(body='{"choices": []}'), "malformed chat-completions answer"),
        (Reply(body='{"choices": [{"message": {"content": 3}}]}'), "malformed chat-completions answer"),
        (Reply(status=401, body="bad key"), "HTTP 401"),
    ],
)
def test_malformed_answers_fail_and_are_not_retried_or_cached(
    server: JudgeServer, reply: Reply, reason: str
) -> None:
    server.policy = lambda body: reply
    judge = HTTPJudge(config(server))
    verdict = judge.judge(PROFILE, "Q?", "x", "y")
    assert verdict.failed and reason in verdict.reason
    assert len(server.requests) == 1
    judge.judge(PROFILE, "Q?", "x", "y")  # a failure is asked again, not served from the cache
    assert len(server.requests) == 2 and judge.counts.cache_hits == 0 and judge.counts.failed == 2


def test_cache_hits_send_no_request(server: JudgeServer) -> None:
    judge = HTTPJudge(config(server))
    pair, other = (PROFILE, "Q?", "x", "y"), (PROFILE, "Q?", "u", "v")
    first = judge.judge_many([pair, pair, other])
    assert len(server.requests) == 2  # the repeated item is asked once
    again = judge.judge("Country: Norway, Age: 45", "Q?", "x", "y")  # the same profile, already rendered
    assert again == first[0] and len(server.requests) == 2
    assert judge.counts.cache_hits == 2 and judge.counts.requests == 2
    judge.judge(PROFILE, "Q?", "y", "x")  # swapped responses are a different question
    HTTPJudge(config(server, model="other-model")).judge(PROFILE, "Q?", "x", "y")  # another judge
    assert len(server.requests) == 4


def test_the_cache_file_persists_across_judges(server: JudgeServer, tmp_path) -> None:
    path = tmp_path / "judge" / "cache.jsonl"
    server.policy = prefer("fjord")
    pairs = items(("fjord", "city"), ("city", "fjord"))
    first = HTTPJudge(config(server, cache_path=path)).judge_many(pairs)
    assert len(path.read_text().splitlines()) == 2
    second = HTTPJudge(config(server, cache_path=path))
    assert second.judge_many(pairs) == first
    assert len(server.requests) == 2 and second.counts.cache_hits == 2


def test_the_api_key_comes_from_the_named_variable(server: JudgeServer, monkeypatch) -> None:
    monkeypatch.setenv("CUMA_TEST_JUDGE_KEY", "sk-test-123")
    HTTPJudge(config(server, api_key_env="CUMA_TEST_JUDGE_KEY")).judge(PROFILE, "Q?", "x", "y")
    HTTPJudge(config(server)).judge(PROFILE, "Q?", "u", "v")
    assert [r["authorization"] for r in server.requests] == ["Bearer sk-test-123", None]
    monkeypatch.delenv("CUMA_TEST_JUDGE_KEY")
    with pytest.raises(
        ConfigError, match=r"api_key_env=CUMA_TEST_JUDGE_KEY: that environment variable is not set"
    ):
        HTTPJudge(config(server, api_key_env="CUMA_TEST_JUDGE_KEY"))


def test_requests_in_flight_are_bounded(server: JudgeServer) -> None:
    server.policy = lambda body: Reply("[[A]]", delay_s=0.2)
    judge = HTTPJudge(config(server, max_concurrency=3))
    verdicts = judge.judge_many(items(*[(f"a{i}", f"b{i}") for i in range(9)]))
    assert all(v.choice == "a" for v in verdicts)
    assert 1 < server.max_in_flight <= 3
