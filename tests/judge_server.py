"""A scriptable OpenAI-compatible chat-completions server on 127.0.0.1, for the HTTP judge's tests.

Each request takes the next scripted `Reply`, or asks the policy when the script is empty. The server
records every request it receives, so tests count requests on the server side.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse


@dataclass
class Reply:
    """One answer: a chat completion with ``content``, or ``body`` sent as is."""

    content: str | None = "[[A]]"
    status: int = 200
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


Policy = Callable[[dict[str, Any]], Reply]


def responses(body: dict[str, Any]) -> tuple[str, str]:
    """Responses A and B as the default judge prompt lays them out in the user message."""
    text = body["messages"][-1]["content"]

    def between(start: str, end: str) -> str:
        return text.split(start, 1)[1].split(end, 1)[0].strip()

    return between("[Response A]", "[End of Response A]"), between("[Response B]", "[End of Response B]")


def prefer(keyword: str) -> Policy:
    """A judge that prefers the response containing ``keyword`` (a tie when both or neither do)."""

    def policy(body: dict[str, Any]) -> Reply:
        a, b = responses(body)
        if (keyword in a) == (keyword in b):
            return Reply("[[C]]")
        return Reply("The person would prefer [[A]]." if keyword in a else "Verdict: [[B]]")

    return policy


class JudgeServer:
    """Serves ``POST /v1/chat/completions`` from a thread; use as a context manager."""

    def __init__(self) -> None:
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self._chat)
        self.reset()

    def reset(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: deque[Reply] = deque()
        self.policy: Policy = lambda body: Reply()
        self.in_flight = self.max_in_flight = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append({"body": body, "authorization": request.headers.get("authorization")})
        reply = self.script.popleft() if self.script else self.policy(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(reply.delay_s)
        finally:
            self.in_flight -= 1
        if reply.body is not None:
            return Response(reply.body, status_code=reply.status, headers=reply.headers)
        message = {"role": "assistant", "content": reply.content}
        completion = {"object": "chat.completion", "choices": [{"index": 0, "message": message}]}
        return JSONResponse(completion, status_code=reply.status, headers=reply.headers)

    def __enter__(self) -> JudgeServer:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        for _ in range(1000):
            if self._server.started:
                return self
            time.sleep(0.01)
        raise RuntimeError("the test judge server did not start within 10 s")

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
