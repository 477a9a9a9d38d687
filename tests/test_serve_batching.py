"""Micro-batching, the bounded queue, timeouts and graceful shutdown of the real server.

A gate (a logits processor that waits on an event) holds the model inside ``generate`` for as long as
a test needs, so "running", "queued" and "in flight" are states the test sets up, not timings.
"""

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from cuma.serve import Engine, ServeConfig, ServerThread, build_app
from cuma.serve.quick import quick_engine

NORWAY = {"country": "Norway", "age_group": "45-54"}
CHILE = {"country": "Chile", "religion": "Catholic"}
QUESTION = [{"role": "user", "content": "How important is religion in your life?"}]
OTHER_QUESTION = [{"role": "user", "content": "Are we spending too much on education?"}]


class Gate(LogitsProcessor):
    """Blocks each decoding step until the test opens the gate; bans EOS so answers run to max_tokens."""

    def __init__(self, eos_token_ids: frozenset[int]) -> None:
        self.opened = threading.Event()
        self.eos = sorted(eos_token_ids)
        self.steps = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.steps += 1
        if not self.opened.wait(timeout=60):
            raise RuntimeError("the test never opened the gate")
        scores[:, self.eos] = -float("inf")
        return scores


@pytest.fixture
def gated_engine(monkeypatch: pytest.MonkeyPatch) -> tuple[Engine, Gate]:
    engine = quick_engine()
    gate = Gate(engine.eos_token_ids)
    generate = engine.model.generate

    def gated(**kwargs: Any) -> Any:
        return generate(**kwargs, logits_processor=LogitsProcessorList([gate]))

    monkeypatch.setattr(engine.model, "generate", gated)
    return engine, gate


def client_for(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=60)


def ask(client: openai.OpenAI, profile: dict, messages: list = QUESTION, max_tokens: int = 10) -> Any:
    return client.chat.completions.create(
        model="cuma-quick",
        messages=messages,
        max_tokens=max_tokens,
        temperature=0,
        extra_body={"profile": profile},
    )


def health(server: ServerThread) -> dict:
    return httpx.get(f"{server.url}/health", timeout=10).json()


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.01)


@pytest.fixture
def servers() -> Iterator[tuple[ServerThread, ServerThread]]:
    """One engine behind two servers: one batching (a long window, room for exactly two rows, so two
    concurrent requests make one batch that starts as soon as it is full) and one running each request
    alone."""
    engine = quick_engine()
    batching = ServeConfig(port=0, max_tokens=16, max_batch_size=2, batch_window_ms=5000)
    alone = ServeConfig(port=0, max_tokens=16, max_batch_size=1, batch_window_ms=0)
    with (
        ServerThread(build_app(engine, batching), batching) as batched,
        ServerThread(build_app(engine, alone), alone) as single,
    ):
        yield batched, single


def test_two_profiles_in_one_batch_answer_as_each_alone(servers: tuple[ServerThread, ServerThread]) -> None:
    batched, single = servers
    requests = [(NORWAY, QUESTION), (CHILE, OTHER_QUESTION)]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda r: ask(client_for(batched), *r), requests))
    assert health(batched)["batches"] == 1
    assert health(batched)["largest_batch"] == 2
    alone = [ask(client_for(single), *r) for r in requests]
    assert health(single)["largest_batch"] == 1
    texts = [r.choices[0].message.content for r in together]
    assert texts == [r.choices[0].message.content for r in alone]
    assert [r.usage.completion_tokens for r in together] == [r.usage.completion_tokens for r in alone]
    swapped = ask(client_for(single), CHILE, QUESTION).choices[0].message.content
    assert texts[0] != swapped  # the profile, not only the question, changes the answer


def test_full_queue_answers_429_and_loses_nothing(gated_engine: tuple[Engine, Gate]) -> None:
    engine, gate = gated_engine
    config = ServeConfig(port=0, max_tokens=8, max_batch_size=1, max_queue=1, batch_window_ms=0)
    with ServerThread(build_app(engine, config), config) as server, ThreadPoolExecutor(2) as pool:
        client = client_for(server)
        running = pool.submit(ask, client, NORWAY, max_tokens=4)
        wait_until(lambda: health(server)["running_rows"] == 1, "the first request runs")
        queued = pool.submit(ask, client, CHILE, max_tokens=4)
        wait_until(lambda: health(server)["queued"] == 1, "the second request waits")
        with pytest.raises(openai.RateLimitError) as caught:
            ask(client, NORWAY, max_tokens=4)
        assert caught.value.status_code == 429
        assert caught.value.code == "queue_full"
        gate.opened.set()
        for future in (running, queued):
            response = future.result(timeout=60)
            assert response.choices[0].finish_reason == "length"
            assert response.usage.completion_tokens == 4
        assert health(server)["refused"] == 1


def test_request_timeout_is_a_504_and_frees_the_model(gated_engine: tuple[Engine, Gate]) -> None:
    engine, gate = gated_engine
    config = ServeConfig(port=0, max_tokens=8, request_timeout_s=0.5, batch_window_ms=0)
    with ServerThread(build_app(engine, config), config) as server:
        client = client_for(server)
        with pytest.raises(openai.APIStatusError) as caught:
            ask(client, NORWAY, max_tokens=8)
        assert caught.value.status_code == 504
        gate.opened.set()
        wait_until(lambda: health(server)["running_rows"] == 0, "the abandoned rows stop")
        assert gate.steps < 8  # cancelled: it did not generate its 8 tokens for nobody


def test_graceful_shutdown_finishes_requests_in_flight(gated_engine: tuple[Engine, Gate]) -> None:
    engine, gate = gated_engine
    config = ServeConfig(port=0, max_tokens=8, max_batch_size=1, batch_window_ms=0)
    server = ServerThread(build_app(engine, config), config).start()
    url = server.url
    with ThreadPoolExecutor(3) as pool:
        client = client_for(server)
        running = pool.submit(ask, client, NORWAY, max_tokens=5)
        wait_until(lambda: health(server)["running_rows"] == 1, "the first request runs")
        queued = pool.submit(ask, client, CHILE, max_tokens=5)
        wait_until(lambda: health(server)["queued"] == 1, "the second request waits")
        stopping = pool.submit(server.stop)
        wait_until(lambda: not accepts_connections(url), "the server stops accepting connections")
        assert not stopping.done()
        gate.opened.set()
        for future in (running, queued):
            response = future.result(timeout=60)
            assert response.choices[0].finish_reason == "length"
            assert response.usage.completion_tokens == 5
        stopping.result(timeout=60)
    assert not server.alive


def accepts_connections(url: str) -> bool:
    try:
        httpx.get(f"{url}/health", timeout=1)
    except httpx.TransportError:
        return False
    return True
