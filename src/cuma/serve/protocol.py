"""Request bodies, validated with pydantic: OpenAI's names and ranges, plus ``profile``.

Fields OpenAI defines but this server does not implement (``logprobs``, ``tools``, ...) are rejected
with a 400 naming them rather than silently ignored. The official client sends ``profile`` with
``extra_body={"profile": {...}}``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

ProfileValue = str | int | float | bool | None
Profile = dict[str, ProfileValue] | Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
"""A mapping field -> value, rendered with the adapter's template, or a ready profile sentence."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ChatMessage(Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def as_template_message(self) -> dict[str, str]:
        """The message as chat templates read it; ``developer`` is OpenAI's newer name for ``system``."""
        return {"role": "system" if self.role == "developer" else self.role, "content": self.text()}


class StreamOptions(Strict):
    include_usage: bool = False


class GenerationParams(Strict):
    """What both completion endpoints share: OpenAI's sampling parameters and the profile."""

    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # OpenAI's end-user id for abuse monitoring: accepted, nothing to do with it
    profile: Profile | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: str | list[str] | None) -> list[str] | None:
        stops = [value] if isinstance(value, str) else value
        if stops is not None:
            if len(stops) > 4:
                raise ValueError(f"at most 4 stop sequences, got {len(stops)}")
            if any(not stop for stop in stops):
                raise ValueError("stop sequences must not be empty")
        return stops

    def stop_sequences(self) -> tuple[str, ...]:
        return tuple(self.stop or ())


class ChatCompletionRequest(GenerationParams):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_limit(self) -> ChatCompletionRequest:
        # max_completion_tokens is OpenAI's newer name for max_tokens; both may arrive, never disagreeing.
        if self.max_completion_tokens is not None:
            if self.max_tokens not in (None, self.max_completion_tokens):
                raise ValueError("max_tokens and max_completion_tokens disagree; give one of them")
            self.max_tokens = self.max_completion_tokens
        return self


class CompletionRequest(GenerationParams):
    """``POST /v1/completions``: a raw text prompt, no chat template."""

    prompt: str


class OptionProbabilitiesRequest(Strict):
    """``POST /v1/option_probabilities``: the next-token probability of each option letter.

    The prompt is rendered with the chat template and ends where the assistant's answer starts, as in
    the survey scoring of `cuma.evaluation.scoring`; the probabilities are renormalised over ``options``.
    """

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    options: list[Annotated[str, StringConstraints(min_length=1)]] = Field(min_length=2)
    profile: Profile | None = None
