"""Response bodies in OpenAI's format, built from the `openai` package's own pydantic types."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from openai.types import Completion, CompletionChoice, CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from pydantic import BaseModel

from cuma.serve.errors import APIError
from cuma.serve.jobs import ChoiceResult

DONE = "data: [DONE]\n\n"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, results: Sequence[ChoiceResult]) -> CompletionUsage:
    completion = sum(result.completion_tokens for result in results)
    return CompletionUsage(
        prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion
    )


class Responder:
    """Builds the bodies of one request; ``chat`` picks chat-completion or legacy-completion types."""

    def __init__(self, model: str, chat: bool) -> None:
        self.model = model
        self.chat = chat
        self.id = new_id("chatcmpl" if chat else "cmpl")
        self.created = int(time.time())

    def full(self, prompt_tokens: int, results: Sequence[ChoiceResult]) -> BaseModel:
        common = dict(id=self.id, created=self.created, model=self.model, usage=usage(prompt_tokens, results))
        if self.chat:
            choices = [
                Choice(
                    index=i,
                    message=ChatCompletionMessage(role="assistant", content=r.text),
                    finish_reason=r.finish_reason,
                )
                for i, r in enumerate(results)
            ]
            return ChatCompletion(object="chat.completion", choices=choices, **common)
        choices = [
            CompletionChoice(index=i, text=r.text, finish_reason=r.finish_reason)
            for i, r in enumerate(results)
        ]
        return Completion(object="text_completion", choices=choices, **common)

    def chunk(
        self,
        index: int,
        text: str,
        finish_reason: str | None = None,
        *,
        first: bool = False,
        usage: CompletionUsage | None = None,
    ) -> str:
        """One SSE event carrying ``text`` for choice ``index`` (the chat API opens with the role)."""
        if self.chat:
            delta = ChoiceDelta(role="assistant", content=text) if first else ChoiceDelta(content=text)
            choice: BaseModel = ChunkChoice(index=index, delta=delta, finish_reason=finish_reason)
        else:
            # A legacy completion chunk has finish_reason null until the end, which the type's
            # Literal does not allow; model_construct builds it unvalidated, as OpenAI sends it.
            choice = CompletionChoice.model_construct(
                index=index, text=text, finish_reason=finish_reason, logprobs=None
            )
        return self._event([choice], usage)

    def usage_chunk(self, usage: CompletionUsage) -> str:
        """OpenAI's closing chunk for ``stream_options.include_usage``: no choices, only usage."""
        return self._event([], usage)

    def _event(self, choices: list[Any], usage: CompletionUsage | None) -> str:
        """A stream chunk of this request's type (chat or legacy completion) as one SSE event."""
        if self.chat:
            kind, name = ChatCompletionChunk, "chat.completion.chunk"
        else:
            kind, name = Completion, "text_completion"
        body: BaseModel = kind(
            id=self.id, object=name, created=self.created, model=self.model, choices=choices, usage=usage
        )
        return sse(body)


def sse(body: BaseModel | APIError) -> str:
    """A server-sent event line; an error mid-stream is sent as OpenAI's error JSON."""
    if isinstance(body, APIError):
        return f"data: {json.dumps(body.body())}\n\n"
    return f"data: {body.model_dump_json(exclude_unset=True)}\n\n"
