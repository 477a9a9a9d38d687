"""Per-row decoding inside one batched ``generate`` call: text, stop sequences, token limits.

Each row of a batch belongs to a different request with its own ``max_tokens`` and ``stop``, so the
batch runs to the largest limit and a `RowTracker` (a stopping criterion, called once per new token)
ends each row on its own terms. Transformers pads a finished row until the whole batch is done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import StoppingCriteria

Emit = Callable[[str, str | None], None]
"""Receives each new piece of text and, with the last piece, the finish reason."""


class RowDecoder:
    """One choice: token ids -> text, cut before the first stop sequence, ended by EOS or ``max_tokens``.

    Text is emitted as soon as it cannot change any more: the last ``len(longest stop) - 1`` characters
    are held back while they could still begin a stop sequence, and so is an incomplete UTF-8 character.
    ``completion_tokens`` counts every token generated for the row, EOS included.
    """

    def __init__(
        self,
        tokenizer: Any,
        eos_token_ids: frozenset[int],
        max_tokens: int,
        stop: Sequence[str] = (),
        emit: Emit | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.eos_token_ids = eos_token_ids
        self.max_tokens = max_tokens
        self.stop = tuple(stop)
        self.emit = emit
        self.token_ids: list[int] = []
        self.text = ""
        self.finish_reason: str | None = None
        self.completion_tokens = 0
        self._holdback = max((len(s) for s in self.stop), default=1) - 1

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def push(self, token_id: int) -> None:
        if self.done:
            return
        self.completion_tokens += 1
        if token_id in self.eos_token_ids:
            self._finish(self._decoded(), "stop")
            return
        self.token_ids.append(token_id)
        decoded = self._decoded()
        cuts = [index for index in (decoded.find(s) for s in self.stop) if index >= 0]
        if cuts:
            self._finish(decoded[: min(cuts)], "stop")
        elif self.completion_tokens >= self.max_tokens:
            self._finish(decoded, "length")
        else:
            safe = len(decoded) - self._holdback
            while safe > 0 and decoded[safe - 1] == "\ufffd":
                safe -= 1
            self._send(decoded[:safe], None)

    def close(self) -> None:
        """Generation ended without this row finishing (the batch hit its token limit)."""
        if not self.done:
            self._finish(self._decoded(), "length")

    def cancel(self) -> None:
        """The request went away: stop the row without emitting anything more."""
        if not self.done:
            self.finish_reason = "cancelled"

    def _decoded(self) -> str:
        return self.tokenizer.decode(
            self.token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )

    def _finish(self, text: str, reason: str) -> None:
        self.finish_reason = reason
        self._send(text, reason)

    def _send(self, text: str, reason: str | None) -> None:
        # Decoding is prefix-stable with cleanup off; emitted text is never taken back.
        delta = text[len(self.text) :] if text.startswith(self.text) else ""
        if not delta and reason is None:
            return
        self.text += delta
        if self.emit is not None:
            self.emit(delta, reason)


class RowTracker(StoppingCriteria):
    """Feeds each row's newest token to its `RowDecoder` and reports the rows that are done.

    ``cancelled[i]()`` is true once row ``i``'s request has gone (timed out or disconnected); the row is
    then stopped too, so an abandoned request does not keep the batch running.
    """

    def __init__(self, decoders: Sequence[RowDecoder], cancelled: Sequence[Callable[[], bool]]) -> None:
        if len(decoders) != len(cancelled):
            raise ValueError(f"{len(decoders)} decoders for {len(cancelled)} cancellation flags")
        self.decoders = list(decoders)
        self.cancelled = list(cancelled)

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        for decoder, is_cancelled, token in zip(
            self.decoders, self.cancelled, input_ids[:, -1].tolist(), strict=True
        ):
            if is_cancelled():
                decoder.cancel()
            decoder.push(token)
        return torch.tensor([decoder.done for decoder in self.decoders], device=input_ids.device)
