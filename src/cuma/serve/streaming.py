"""``stream: true``: a job's text as server-sent events in OpenAI's chunk format.

Each choice opens with a role-only chunk, then sends text as the decoder releases it, then its finish reason;
the stream ends with ``data: [DONE]``. The last finish chunk carries the usage, and
``stream_options.include_usage`` adds OpenAI's separate usage chunk. An error or a timeout after the
stream has started is sent as an error event, since the status line has already gone out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from cuma.serve.errors import APIError
from cuma.serve.jobs import GenerationJob
from cuma.serve.responses import DONE, Responder, sse, usage

_END = object()


def attach_stream(job: GenerationJob) -> asyncio.Queue[Any]:
    """Route the job's text from the inference thread into a queue on the running event loop."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def on_text(index: int, text: str, finish_reason: str | None) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (index, text, finish_reason))

    job.on_text = on_text
    return queue


async def stream_events(
    job: GenerationJob,
    queue: asyncio.Queue[Any],
    future: asyncio.Future[Any],
    responder: Responder,
    prompt_tokens: int,
    deadline: float,
    include_usage: bool,
) -> AsyncIterator[str]:
    # The batch's result is set after every text event it emitted, so _END always comes last.
    future.add_done_callback(lambda _: queue.put_nowait(_END))
    last_finish: tuple[int, str, str] | None = None
    try:
        for index in range(job.n):
            yield responder.chunk(index, "", first=True)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            item = await asyncio.wait_for(queue.get(), remaining)
            if item is _END:
                break
            if last_finish is not None:
                yield responder.chunk(*last_finish)
            index, text, finish_reason = item
            if finish_reason is None:
                yield responder.chunk(index, text)
                last_finish = None
            else:
                # Held back so that the stream's last choice chunk can carry the usage.
                last_finish = (index, text, finish_reason)
        results = future.result()
        total = usage(prompt_tokens, results)
        if last_finish is not None:
            yield responder.chunk(*last_finish, usage=total)
        if include_usage:
            yield responder.usage_chunk(total)
        yield DONE
    except TimeoutError:
        job.cancelled.set()
        yield sse(APIError(504, "the request timed out while generating", code="timeout"))
    except Exception as err:  # the batch failed: say so in the stream rather than cutting it off
        yield sse(APIError(500, f"generation failed: {type(err).__name__}: {err}"))
    finally:
        if not future.done():
            job.cancelled.set()
