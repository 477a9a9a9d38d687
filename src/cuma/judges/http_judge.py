"""`HTTPJudge`: an OpenAI-compatible chat-completions server as the judge.

Network trouble never ends a run: 429s, 5xx answers, timeouts and refused connections are retried with
exponential backoff (a server's ``Retry-After`` is honoured), and what still fails becomes a ``failed``
verdict with the reason. Requests are bounded in flight and in total (``max_requests``), and verdicts are
cached by judge, prompt template and inputs, so the same question is never paid for twice.
"""

from __future__ import annotations

import email.utils
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from cuma.config import JudgeConfig
from cuma.errors import ConfigError
from cuma.judges.base import Judge, map_bounded
from cuma.judges.cache import VerdictCache, cache_key
from cuma.judges.parsing import parse_verdict
from cuma.judges.prompt import JudgePrompt, load_prompt
from cuma.judges.verdict import JudgeItem, Verdict

BUDGET_EXHAUSTED = "request budget exhausted"
_RETRIED_STATUS = (429, 500, 502, 503, 504)


class HTTPJudge(Judge):
    """Asks ``{base_url}/chat/completions`` at temperature 0 and parses ``[[A]]``/``[[B]]``/``[[C]]``.

    Args:
        config: a ``JudgeConfig`` of kind "http"; the API key is read from the environment variable it
            names, once, here.
        prompt: the judge prompt; default ``load_prompt(config.template)``.
        sleep: the wait between retries (a parameter so tests can record the waits).
    """

    def __init__(
        self,
        config: JudgeConfig,
        prompt: JudgePrompt | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if config.kind != "http":
            raise ConfigError(f"judge.kind={config.kind!r}: HTTPJudge needs kind 'http'")
        super().__init__(progress=config.progress)
        self.config = config
        self.prompt = prompt or load_prompt(config.template)
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self._sleep = sleep
        self._client = httpx.Client(headers=_auth_headers(config.api_key_env), timeout=config.timeout_s)
        self._cache = VerdictCache(config.cache_path)
        self._budget = _Budget(config.max_requests)

    def close(self) -> None:
        self._client.close()

    def _judge_items(self, items: list[JudgeItem]) -> list[Verdict]:
        messages = [self.prompt.messages(item) for item in items]
        keys = [self._key(item) for item in items]
        verdicts: dict[str, Verdict] = {}
        for key in keys:
            cached = self._cache.get(key)
            if cached is not None:
                verdicts[key] = cached
        todo = {key: message for key, message in zip(keys, messages, strict=True) if key not in verdicts}
        self._counter.add(cache_hits=len(keys) - len(todo))
        answers = map_bounded(
            self._request, list(todo.values()), self.config.max_concurrency, self.progress, "judging"
        )
        for key, verdict in zip(todo, answers, strict=True):
            verdicts[key] = verdict
            if not verdict.failed:
                self._cache.put(key, verdict)
        return [verdicts[key] for key in keys]

    def _key(self, item: JudgeItem) -> str:
        return cache_key(
            judge=[self.config.base_url.rstrip("/"), self.config.model],
            template=self.prompt.fingerprint,
            inputs=[self.prompt.render_profile(item.profile), item.prompt, item.response_a, item.response_b],
        )

    def _request(self, messages: list[dict[str, str]]) -> Verdict:
        body = {
            "model": self.config.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": self.config.max_tokens,
        }
        attempts = self.config.max_retries + 1
        problem, wait = "", 0.0
        for attempt in range(attempts):
            if attempt:
                self._counter.add(retries=1)
                self._sleep(wait)
            if not self._budget.take():
                self._counter.add(budget_exhausted=1)
                return Verdict.failure(BUDGET_EXHAUSTED, raw=problem or None)
            self._counter.add(requests=1)
            try:
                response = self._client.post(self.url, json=body)
            except httpx.TimeoutException:
                problem = f"no answer from {self.url} within {self.config.timeout_s} s"
            except httpx.TransportError as err:
                problem = f"cannot reach {self.url}: {type(err).__name__}: {err}"
            else:
                if response.status_code not in _RETRIED_STATUS:
                    return self._verdict(response)
                problem = f"HTTP {response.status_code} from {self.url}: {response.text[:200]}"
                retry_after = _retry_after(response)
                if retry_after is not None:
                    wait = min(retry_after, self.config.max_backoff_s)
                    continue
            wait = min(self.config.backoff_s * 2**attempt, self.config.max_backoff_s)
        return Verdict.failure(f"{problem} (gave up after {attempts} attempts)")

    def _verdict(self, response: httpx.Response) -> Verdict:
        if response.status_code != 200:
            return Verdict.failure(f"HTTP {response.status_code} from {self.url}: {response.text[:200]}")
        malformed = Verdict.failure(
            f"malformed chat-completions answer from {self.url}: {response.text[:200]}"
        )
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return malformed
        return parse_verdict(content) if content is None or isinstance(content, str) else malformed


class _Budget:
    """At most ``limit`` requests in all (None: no limit), shared by the threads in flight."""

    def __init__(self, limit: int | None) -> None:
        self._left = limit
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left is None:
                return True
            if self._left == 0:
                return False
            self._left -= 1
            return True


def _auth_headers(api_key_env: str | None) -> dict[str, str]:
    if api_key_env is None:
        return {}
    key = os.environ.get(api_key_env)
    if not key:
        raise ConfigError(f"judge.api_key_env={api_key_env}: that environment variable is not set")
    return {"Authorization": f"Bearer {key}"}


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date); None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
