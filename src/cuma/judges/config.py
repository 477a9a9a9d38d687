"""`JudgeConfig`: which judge to use and how it behaves, validated when built."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from cuma.errors import ConfigError
from cuma.judges.prompt import PROMPTS

KINDS = ("http", "local", "callable")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class JudgeConfig:
    """Settings of a judge; ``build_judge`` turns them into one. Invalid values raise ``ConfigError``."""

    kind: Literal["http", "local", "callable"] = field(
        default="http",
        metadata={"help": "http: an OpenAI-compatible server; local: a causal LM; callable: a function."},
    )
    base_url: str | None = field(
        default=None,
        metadata={
            "help": "API root of the http judge, e.g. https://api.openai.com/v1 (no /chat/completions)."
        },
    )
    model: str | None = field(
        default=None,
        metadata={"help": "Model name sent to the http judge; for local, an alias, path or hub id to load."},
    )
    api_key_env: str | None = field(
        default=None,
        metadata={
            "help": "NAME of the environment variable holding the API key, never the key; None: no key."
        },
    )
    timeout_s: float = field(
        default=60.0,
        metadata={"help": "Seconds before one http request times out."},
    )
    max_retries: int = field(
        default=4,
        metadata={"help": "Repeats of a request after a 429, a 5xx, a timeout or a connection error."},
    )
    backoff_s: float = field(
        default=1.0,
        metadata={"help": "First wait before a retry; doubled on each further retry."},
    )
    max_backoff_s: float = field(
        default=60.0,
        metadata={"help": "Longest wait before a retry, including a server's Retry-After."},
    )
    max_requests: int | None = field(
        default=None,
        metadata={"help": "Requests the http judge may send in all, retries included; then verdicts fail."},
    )
    max_concurrency: int = field(
        default=8,
        metadata={"help": "Requests (or callable calls) in flight at once."},
    )
    max_tokens: int = field(
        default=16,
        metadata={"help": "Longest answer the http judge may write."},
    )
    batch_size: int = field(
        default=8,
        metadata={"help": "Prompts scored per forward pass by the local judge."},
    )
    cache_path: str | None = field(
        default=None,
        metadata={"help": "JSONL file of http verdicts kept across runs; None: an in-memory cache only."},
    )
    both_orders: bool = field(
        default=True,
        metadata={"help": "Judge each pair as (a, b) and (b, a); disagreeing orders count as a tie."},
    )
    template: str = field(
        default="default",
        metadata={"help": "Built-in judge prompt name, or a YAML file with 'system' and 'user' keys."},
    )
    max_failure_share: float = field(
        default=0.1,
        metadata={"help": "Share of failed verdicts above which a run stops (check_failure_share)."},
    )
    progress: bool = field(
        default=False,
        metadata={"help": "Show a progress bar over each batch of verdicts."},
    )

    def __post_init__(self) -> None:
        if self.cache_path is not None:
            object.__setattr__(self, "cache_path", str(self.cache_path))
        self._validate()

    def _validate(self) -> None:
        if self.kind not in KINDS:
            _fail("kind", self.kind, f"one of {', '.join(KINDS)}")
        if self.kind == "http":
            if not isinstance(self.base_url, str) or not self.base_url.startswith(("http://", "https://")):
                _fail("base_url", self.base_url, "an http:// or https:// URL (required by the http judge)")
            if self.base_url.rstrip("/").endswith("/chat/completions"):
                _fail("base_url", self.base_url, "the API root (e.g. .../v1); /chat/completions is added")
            if not isinstance(self.model, str) or not self.model:
                _fail("model", self.model, "a model name (required by the http judge)")
        if self.api_key_env is not None and not (
            isinstance(self.api_key_env, str) and _ENV_NAME.fullmatch(self.api_key_env)
        ):
            # The value is not echoed: it may be a key pasted in by mistake.
            raise ConfigError(
                "judge.api_key_env must be the NAME of an environment variable (letters, digits, _), "
                "e.g. OPENAI_API_KEY, never the key itself"
            )
        _number(self, "timeout_s", minimum=0.0, strict=True)
        _number(self, "max_retries", minimum=0, integer=True)
        _number(self, "backoff_s", minimum=0.0)
        _number(self, "max_backoff_s", minimum=0.0)
        _number(self, "max_requests", minimum=1, integer=True, optional=True)
        _number(self, "max_concurrency", minimum=1, integer=True)
        _number(self, "max_tokens", minimum=1, integer=True)
        _number(self, "batch_size", minimum=1, integer=True)
        _number(self, "max_failure_share", minimum=0.0)
        if self.max_failure_share > 1:
            _fail("max_failure_share", self.max_failure_share, "a share between 0 and 1")
        for name in ("both_orders", "progress"):
            if not isinstance(getattr(self, name), bool):
                _fail(name, getattr(self, name), "true or false")
        if not isinstance(self.template, str) or (
            self.template not in PROMPTS and not Path(self.template).is_file()
        ):
            builtin = ", ".join(PROMPTS)
            _fail("template", self.template, f"a built-in prompt ({builtin}) or an existing YAML file")

    @classmethod
    def help(cls) -> dict[str, str]:
        """Field name -> its documentation, for command-line help and generated docs."""
        return {f.name: f.metadata["help"] for f in fields(cls)}


def _number(
    config: JudgeConfig,
    name: str,
    minimum: float,
    integer: bool = False,
    optional: bool = False,
    strict: bool = False,
) -> None:
    value = getattr(config, name)
    if value is None and optional:
        return
    kinds = (int,) if integer else (int, float)
    is_number = isinstance(value, kinds) and not isinstance(value, bool)
    if not is_number or value < minimum or (strict and value == minimum):
        expected = f"{'an integer' if integer else 'a number'} {'>' if strict else '>='} {minimum}"
        _fail(name, value, expected + (" or null" if optional else ""))


def _fail(name: str, value: object, expected: str) -> None:
    raise ConfigError(f"judge.{name}={value!r}: must be {expected}")
