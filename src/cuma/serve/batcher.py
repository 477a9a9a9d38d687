"""`MicroBatcher`: requests that arrive close together are generated together.

Jobs wait in a bounded FIFO. The oldest job's batch starts ``window_s`` after it arrived (at once
when the batch is full), taking every waiting job with the same batch key while the rows fit in
``max_batch_size``; a job larger than that runs alone. Batches run one at a time on a single inference
thread, so the model is never entered twice at once, and the event loop stays free to accept,
stream and refuse requests meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cuma.serve.errors import APIError
from cuma.serve.jobs import Job


@dataclass
class BatchStats:
    """Counters reported by ``GET /health``."""

    batches: int = 0
    rows: int = 0
    largest_batch: int = 0
    refused: int = 0


@dataclass(eq=False)
class _Waiting:
    job: Job
    future: asyncio.Future[Any]
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Queues jobs, groups them into batches and runs ``runner(batch) -> results`` off the event loop.

    Args:
        runner: runs one batch and returns one result per job, in order (`cuma.serve.engine.Engine.run`).
        max_batch_size: most rows per batch; 1 runs every job alone.
        window_s: how long the oldest job waits for companions.
        max_queue: most waiting jobs; `submit` refuses more with a 429.
    """

    def __init__(
        self,
        runner: Callable[[Sequence[Job]], list[Any]],
        max_batch_size: int,
        window_s: float,
        max_queue: int,
    ) -> None:
        self.runner = runner
        self.max_batch_size = max_batch_size
        self.window_s = window_s
        self.max_queue = max_queue
        self.stats = BatchStats()
        self.running_rows = 0
        self._waiting: deque[_Waiting] = deque()
        self._changed = asyncio.Event()
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cuma-inference")
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        return len(self._waiting)

    @property
    def closing(self) -> bool:
        return self._closing

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="cuma-micro-batcher")

    def submit(self, job: Job) -> asyncio.Future[Any]:
        """Queue ``job``; the future resolves to its result. 429 when the queue is full, 503 when closing."""
        if self._closing:
            raise APIError(
                503, "the server is shutting down; retry on another instance", code="shutting_down"
            )
        if len(self._waiting) >= self.max_queue:
            self.stats.refused += 1
            raise APIError(
                429,
                f"the server queue is full ({self.max_queue} requests waiting); retry shortly",
                code="queue_full",
            )
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(job, future))
        self._changed.set()
        return future

    async def close(self) -> None:
        """Refuse new jobs, finish every queued and running one, then stop the inference thread."""
        self._closing = True
        self._changed.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._drop_cancelled()
            if not self._waiting:
                if self._closing:
                    return
                self._changed.clear()
                await self._changed.wait()
                continue
            await self._gather()
            batch = self._take()
            if not batch:
                continue
            rows = sum(item.job.rows for item in batch)
            self.running_rows = rows
            self.stats.batches += 1
            self.stats.rows += rows
            self.stats.largest_batch = max(self.stats.largest_batch, rows)
            try:
                results = await loop.run_in_executor(self._executor, self.runner, [i.job for i in batch])
            except Exception as err:  # every job of the failed batch gets the error, none is lost
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(err)
            else:
                for item, result in zip(batch, results, strict=True):
                    if not item.future.done():
                        item.future.set_result(result)
            finally:
                self.running_rows = 0

    async def _gather(self) -> None:
        """Wait until the oldest job's window has passed or its batch is full."""
        deadline = self._waiting[0].arrived + self.window_s
        while not self._closing and self._rows_like(self._waiting[0].job) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return
            self._drop_cancelled()
            if not self._waiting:
                return

    def _rows_like(self, job: Job) -> int:
        return sum(item.job.rows for item in self._waiting if item.job.batch_key == job.batch_key)

    def _take(self) -> list[_Waiting]:
        if not self._waiting:
            return []
        key = self._waiting[0].job.batch_key
        batch: list[_Waiting] = []
        rows = 0
        kept: deque[_Waiting] = deque()
        for item in self._waiting:
            fits = rows + item.job.rows <= self.max_batch_size
            if item.job.batch_key == key and (not batch or fits):
                batch.append(item)
                rows += item.job.rows
            else:
                kept.append(item)
        self._waiting = kept
        return batch

    def _drop_cancelled(self) -> None:
        if any(item.job.cancelled.is_set() for item in self._waiting):
            self._waiting = deque(item for item in self._waiting if not item.job.cancelled.is_set())
