"""`ServeConfig`: the limits and batching settings of ``cuma serve``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeConfig:
    """Settings of the HTTP server; invalid values raise ``ValueError`` before anything is loaded."""

    host: str = "127.0.0.1"
    """Address to listen on; the loopback default keeps the server private to this machine."""
    port: int = 8000
    """TCP port (0 lets the operating system pick a free one)."""
    max_batch_size: int = 8
    """Most rows generated together in one ``generate`` call; each row is one choice of one request
    with its own profile. 1 turns micro-batching off."""
    batch_window_ms: float = 10.0
    """How long the oldest waiting request waits for companions before its batch starts."""
    max_queue: int = 64
    """Most requests waiting for a batch; one more is answered 429 instead of waiting without bound."""
    request_timeout_s: float = 120.0
    """Wall-clock limit of one request, queueing included; past it the request is answered 504 and its
    rows stop generating. Graceful shutdown waits this long for in-flight requests."""
    max_tokens: int = 512
    """Most new tokens one request may ask for (``max_tokens``); also the default when it asks for none,
    cut to what the context leaves."""
    max_n: int = 8
    """Most choices (``n``) one request may ask for."""
    context_length: int | None = None
    """Most prompt + completion tokens; None reads the model's ``max_position_embeddings``."""
    profile_cache_size: int = 10_000
    """Most profile encodings kept, keyed by rendered profile text."""

    def __post_init__(self) -> None:
        positive = {
            "max_batch_size": self.max_batch_size,
            "max_queue": self.max_queue,
            "request_timeout_s": self.request_timeout_s,
            "max_tokens": self.max_tokens,
            "max_n": self.max_n,
            "profile_cache_size": self.profile_cache_size,
        }
        if self.context_length is not None:
            positive["context_length"] = self.context_length
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"ServeConfig.{name}={value!r}: must be positive")
        if self.batch_window_ms < 0:
            raise ValueError(f"ServeConfig.batch_window_ms={self.batch_window_ms!r}: must be >= 0")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"ServeConfig.port={self.port!r}: must be in 0..65535")
