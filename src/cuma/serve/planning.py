"""Validated requests -> jobs, with the limits of `ServeConfig` and the model's context applied.

Every limit a request can break is a 400 naming its parameter, checked before the request queues.
"""

from __future__ import annotations

from cuma.serve.config import ServeConfig
from cuma.serve.engine import Engine
from cuma.serve.errors import APIError, invalid
from cuma.serve.jobs import GenerationJob, Sampling, ScoreJob
from cuma.serve.protocol import GenerationParams, OptionProbabilitiesRequest


def check_model(engine: Engine, requested: str) -> None:
    if requested != engine.name:
        raise APIError(
            404,
            f"model {requested!r} is not served here; this server serves {engine.name!r} (see /v1/models)",
            param="model",
            code="model_not_found",
        )


def generation_job(
    engine: Engine, config: ServeConfig, request: GenerationParams, prompt_ids: list[int], prompt_param: str
) -> GenerationJob:
    """The job for a chat or text completion whose prompt is ``prompt_ids`` (from ``prompt_param``)."""
    check_model(engine, request.model)
    if request.n > config.max_n:
        raise invalid(f"n={request.n} is over this server's limit of {config.max_n}", param="n")
    if request.max_tokens is not None and request.max_tokens > config.max_tokens:
        raise invalid(
            f"max_tokens={request.max_tokens} is over this server's limit of {config.max_tokens}",
            param="max_tokens",
        )
    context = config.context_length or engine.context_length
    room = context - len(prompt_ids)
    if room < 1 or (request.max_tokens is not None and request.max_tokens > room):
        asked = f" + max_tokens {request.max_tokens}" if request.max_tokens is not None else ""
        raise invalid(
            f"the prompt is {len(prompt_ids)} tokens{asked}, over this model's context of {context} tokens; "
            "shorten the prompt or ask for fewer tokens",
            param=prompt_param,
            code="context_length_exceeded",
        )
    return GenerationJob(
        prompt_ids=prompt_ids,
        profile_text=engine.profile_text(request.profile),
        sampling=Sampling(request.temperature, request.top_p, request.seed),
        max_tokens=request.max_tokens or min(config.max_tokens, room),
        n=request.n,
        stop=request.stop_sequences(),
    )


def score_job(engine: Engine, config: ServeConfig, request: OptionProbabilitiesRequest) -> ScoreJob:
    check_model(engine, request.model)
    prompt_ids = engine.chat_prompt([m.as_template_message() for m in request.messages])
    context = config.context_length or engine.context_length
    if len(prompt_ids) > context:
        raise invalid(
            f"the prompt is {len(prompt_ids)} tokens, over this model's context of {context} tokens",
            param="messages",
            code="context_length_exceeded",
        )
    return ScoreJob(
        prompt_ids=prompt_ids,
        profile_text=engine.profile_text(request.profile),
        option_token_ids=engine.option_token_ids(request.options),
    )
