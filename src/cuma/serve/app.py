"""`build_app`: the FastAPI application of ``cuma serve``.

OpenAI-compatible routes (``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``), a health
check, the comparison page at ``/`` and the two small JSON routes it uses (``/v1/profile_fields``,
``/v1/option_probabilities``). As in ``transformers serve``, responses are the `openai` package's types
and one inference thread runs the model; unlike it, concurrent requests are micro-batched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from openai.types import Model

from cuma.serve.batcher import MicroBatcher
from cuma.serve.config import ServeConfig
from cuma.serve.engine import Engine
from cuma.serve.errors import APIError, install_error_handlers
from cuma.serve.jobs import GenerationJob, Job
from cuma.serve.page import PAGE_HTML
from cuma.serve.planning import generation_job, score_job
from cuma.serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    GenerationParams,
    OptionProbabilitiesRequest,
)
from cuma.serve.responses import Responder
from cuma.serve.streaming import attach_stream, stream_events


def build_app(engine: Engine, config: ServeConfig | None = None) -> FastAPI:
    """The app serving ``engine``; its micro-batcher starts and drains with the app's lifespan."""
    config = config or ServeConfig()
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher = MicroBatcher(
            engine.run, config.max_batch_size, config.batch_window_ms / 1000, config.max_queue
        )
        batcher.start()
        app.state.batcher = batcher
        yield
        # uvicorn has stopped accepting and waited for open requests; finish what is still queued.
        await batcher.close()

    app = FastAPI(title=f"cuma serve: {engine.name}", lifespan=lifespan)
    install_error_handlers(app)

    async def run(request: Request, job: Job, deadline: float) -> Any:
        future = request.app.state.batcher.submit(job)
        try:
            return await asyncio.wait_for(asyncio.shield(future), deadline - time.monotonic())
        except TimeoutError:
            job.cancelled.set()
            raise APIError(
                504, f"the request took longer than {config.request_timeout_s} s", code="timeout"
            ) from None
        except asyncio.CancelledError:
            job.cancelled.set()
            raise

    async def complete(request: Request, body: GenerationParams, job: GenerationJob, chat: bool) -> Any:
        deadline = time.monotonic() + config.request_timeout_s
        responder = Responder(engine.name, chat)
        if not body.stream:
            results = await run(request, job, deadline)
            return responder.full(len(job.prompt_ids), results)
        queue = attach_stream(job)
        future = request.app.state.batcher.submit(job)  # a full queue is a 429 before the stream opens
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        events = stream_events(job, queue, future, responder, len(job.prompt_ids), deadline, include_usage)
        return StreamingResponse(events, media_type="text/event-stream")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request, body: ChatCompletionRequest) -> Any:
        prompt_ids = engine.chat_prompt([message.as_template_message() for message in body.messages])
        return await complete(
            request, body, generation_job(engine, config, body, prompt_ids, "messages"), True
        )

    @app.post("/v1/completions")
    async def completions(request: Request, body: CompletionRequest) -> Any:
        prompt_ids = engine.text_prompt(body.prompt)
        return await complete(
            request, body, generation_job(engine, config, body, prompt_ids, "prompt"), False
        )

    @app.post("/v1/option_probabilities")
    async def option_probabilities(request: Request, body: OptionProbabilitiesRequest) -> dict[str, Any]:
        job = score_job(engine, config, body)
        probabilities = await run(request, job, time.monotonic() + config.request_timeout_s)
        return {
            "object": "option_probabilities",
            "model": engine.name,
            "options": [
                {"option": option, "probability": p}
                for option, p in zip(body.options, probabilities, strict=True)
            ],
            "usage": {"prompt_tokens": len(job.prompt_ids)},
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        model = Model(id=engine.name, created=created, object="model", owned_by="cuma")
        return {"object": "list", "data": [model.model_dump()]}

    @app.get("/v1/profile_fields")
    async def profile_fields() -> dict[str, Any]:
        return {
            "model": engine.name,
            "reads_profiles": engine.reads_profiles,
            "fields": engine.profile_fields,
        }

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        batcher: MicroBatcher = request.app.state.batcher
        body = {
            "status": "shutting_down" if batcher.closing else "ok",
            "model": engine.name,
            "queued": batcher.queued,
            "running_rows": batcher.running_rows,
            **vars(batcher.stats),
        }
        return JSONResponse(body, status_code=503 if batcher.closing else 200)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE_HTML

    return app
