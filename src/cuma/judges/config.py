"""`JudgeConfig`: which judge to use and how it behaves, checked when built (`cuma.fieldcheck`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from cuma.errors import ConfigError
from cuma.fieldcheck import AT_LEAST_1, NON_NEGATIVE, POSITIVE, Check, Checked, doc
from cuma.judges.prompt import PROMPTS

SHARE = Check("in [0, 1]", lambda v: 0 <= v <= 1)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class JudgeConfig(Checked):
    """Settings of a judge; ``build_judge`` turns them into one. Bad values raise ``ConfigError``."""

    prefix: ClassVar[str] = "judge."

    kind: Literal["http", "local", "callable"] = field(
        default="http",
        metadata=doc("http: an OpenAI-compatible server; local: a causal LM; callable: a Python function."),
    )
    base_url: str | None = field(
        default=None,
        metadata=doc(
            "API root of the http judge, e.g. https://api.openai.com/v1 (without /chat/completions)."
        ),
    )
    model: str | None = field(
        default=None,
        metadata=doc(
            "Model name sent to the http judge; for a local judge, the alias, path or hub id to load."
        ),
    )
    api_key_env: str | None = field(
        default=None,
        metadata=doc("NAME of the environment variable holding the API key, never the key; null: no key."),
    )
    timeout_s: float = field(
        default=60.0, metadata=doc("Seconds before one http request times out.", POSITIVE)
    )
    max_retries: int = field(
        default=4,
        metadata=doc(
            "Repeats of a request after a 429, a 5xx, a timeout or a connection error.", NON_NEGATIVE
        ),
    )
    backoff_s: float = field(
        default=1.0, metadata=doc("First wait before a retry; doubled on each further retry.", NON_NEGATIVE)
    )
    max_backoff_s: float = field(
        default=60.0,
        metadata=doc("Longest wait before a retry, a server's Retry-After included.", NON_NEGATIVE),
    )
    max_requests: int | None = field(
        default=None,
        metadata=doc(
            "Requests the http judge may send in all, retries included; then verdicts fail.", AT_LEAST_1
        ),
    )
    max_concurrency: int = field(
        default=8, metadata=doc("Requests (or callable calls) in flight at once.", AT_LEAST_1)
    )
    max_tokens: int = field(default=16, metadata=doc("Longest answer the http judge may write.", AT_LEAST_1))
    batch_size: int = field(default=8, metadata=doc("Prompts per forward pass of a local judge.", AT_LEAST_1))
    cache_path: str | None = field(
        default=None,
        metadata=doc("JSONL file of http verdicts kept across runs; null: an in-memory cache only."),
    )
    both_orders: bool = field(
        default=True,
        metadata=doc("Judge each pair as (a, b) and (b, a); orders that disagree count as a tie."),
    )
    template: str = field(
        default="default",
        metadata=doc("Built-in judge prompt name, or a YAML file with 'user' and optional 'system' keys."),
    )
    max_failure_share: float = field(
        default=0.1,
        metadata=doc("Share of failed verdicts above which a run stops (check_failure_share).", SHARE),
    )
    progress: bool = field(default=False, metadata=doc("Show a progress bar over each batch of verdicts."))

    def __post_init__(self) -> None:
        if isinstance(self.cache_path, Path):
            object.__setattr__(self, "cache_path", str(self.cache_path))
        super().__post_init__()

    def _check(self) -> None:
        if self.kind == "http":
            if self.base_url is None or not self.base_url.startswith(("http://", "https://")):
                raise ConfigError(f"judge.base_url={self.base_url!r}: the http judge needs an http(s):// URL")
            if self.base_url.rstrip("/").endswith("/chat/completions"):
                raise ConfigError(
                    f"judge.base_url={self.base_url!r}: must be the API root (e.g. .../v1); "
                    "/chat/completions is added"
                )
            if not self.model:
                raise ConfigError(f"judge.model={self.model!r}: the http judge needs a model name")
        if self.api_key_env is not None and not _ENV_NAME.fullmatch(self.api_key_env):
            # The value is not echoed: it may be a key pasted in by mistake.
            raise ConfigError(
                "judge.api_key_env: must be the NAME of an environment variable (letters, digits, _), "
                "e.g. OPENAI_API_KEY, never the key itself"
            )
        if self.template not in PROMPTS and not Path(self.template).is_file():
            raise ConfigError(
                f"judge.template={self.template!r}: must be a built-in prompt ({', '.join(PROMPTS)}) "
                "or an existing YAML file"
            )
