"""Adaptive micro-batching: many small requests, one ONNX Runtime call.

Requests are queued with their rows. One batcher task takes the first queued request,
then keeps taking more until the batch holds `max_batch` rows or `max_wait_ms` has passed,
runs the model once in a worker thread (the event loop never blocks on it) and hands each
request its own slice of every output, in order.

Adaptive: the batcher only waits for more rows while other requests have been announced
(received, still being parsed) and are not queued yet. A lone caller therefore never pays
`max_wait_ms`; under concurrency the wait fills batches. While a batch runs, new requests
queue up and make the next batch, so batch sizes grow with load on their own.

A failing batch is retried request by request, so one bad request fails alone.

Inline fast path: a request whose rows the model is measured to answer in under
`inline_below_ms` runs right away on the event-loop thread when it finds the batcher idle
with nobody else announced, or when it fills a batch by itself (there is nothing to merge
it with). A thread hop (queue put, worker wake-up, the loop's wake-up and the
GIL hand-back) costs more than a sub-millisecond model call, which is most of what a lone
caller would wait for. Slow models, and small requests under concurrency (they may merge),
go through the worker thread, so a long call never stalls the loop and parsing overlaps
the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

Outputs = dict[str, npt.NDArray[Any]]
RunBatch = Callable[[npt.NDArray[Any]], Mapping[str, npt.NDArray[Any]]]


class BatcherClosed(Exception):
    """The batcher is draining or stopped and takes no new requests."""


@dataclass
class _Pending:
    rows: npt.NDArray[Any]
    future: asyncio.Future[Outputs]
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = int(self.rows.shape[0])


def split_outputs(outputs: Mapping[str, npt.NDArray[Any]], sizes: list[int]) -> list[Outputs]:
    """Cut every output along its first axis into consecutive slices of `sizes` rows."""
    total = sum(sizes)
    for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != total:
            raise ValueError(f"output {name!r} has {value.shape[:1]} rows, expected {total}")
    parts: list[Outputs] = []
    start = 0
    for size in sizes:
        parts.append({name: value[start : start + size] for name, value in outputs.items()})
        start += size
    return parts


@dataclass
class BatchStats:
    batches: int = 0
    rows: int = 0
    requests: int = 0


class MicroBatcher:
    """Queue requests and run them through `run_batch` in merged batches.

    `on_batch(rows, requests, seconds)` and `on_depth(queued_requests)` are hooks for metrics.
    """

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch: int,
        max_wait_ms: float,
        executor: Executor | None = None,
        on_batch: Callable[[int, int, float], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
        inline_below_ms: float = 1.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must not be negative")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._own_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="onnxruntime")
        self._on_batch = on_batch
        self._on_depth = on_depth
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._carry: _Pending | None = None
        self._announced = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._busy = False
        self._inline_below = inline_below_ms / 1000.0
        self._seconds_per_row: float | None = None  # measured, smoothed; None until a call ran
        self.stats = BatchStats()

    # --- callers ------------------------------------------------------------------------

    @contextlib.contextmanager
    def announce(self) -> Iterator[None]:
        """Mark a request as on its way (being read and parsed) for the adaptive wait."""
        self._announced += 1
        try:
            yield
        finally:
            self._announced -= 1

    async def submit(self, rows: npt.NDArray[Any]) -> Outputs:
        """Queue `rows` (first axis = rows) and wait for their slice of the outputs."""
        if self._closing:
            raise BatcherClosed("the server is shutting down")
        if self._may_run_inline(rows):
            return self._run_inline(rows)
        self.start()
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(rows, future))
        if self._on_depth is not None:
            self._on_depth(self.depth)
        return await future

    def _may_run_inline(self, rows: npt.NDArray[Any]) -> bool:
        per_row = self._seconds_per_row
        if per_row is None or per_row * len(rows) >= self._inline_below:
            return False
        if len(rows) >= self.max_batch:  # a full batch alone: nothing to merge it with
            return True
        return not self._busy and self._announced <= 0 and self._carry is None and self._queue.empty()

    def _run_inline(self, rows: npt.NDArray[Any]) -> Outputs:
        outputs, seconds = self._timed_run(rows)
        self._record(int(rows.shape[0]), 1, seconds)
        return dict(outputs)

    def _timed_run(self, rows: npt.NDArray[Any]) -> tuple[Mapping[str, npt.NDArray[Any]], float]:
        """The model call and its own duration (not the thread hop around it)."""
        started = time.perf_counter()
        outputs = self.run_batch(rows)
        return outputs, time.perf_counter() - started

    def _record(self, rows: int, requests: int, seconds: float) -> None:
        per_row = seconds / max(rows, 1)
        previous = self._seconds_per_row
        self._seconds_per_row = per_row if previous is None else 0.8 * previous + 0.2 * per_row
        if self._on_batch is not None:
            self._on_batch(rows, requests, seconds)
        self.stats.batches += 1
        self.stats.rows += rows
        self.stats.requests += requests

    @property
    def depth(self) -> int:
        return self._queue.qsize() + (1 if self._carry is not None else 0)

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="micro-batcher")

    async def drain(self) -> None:
        """Refuse new requests, finish every queued one, then stop."""
        self._closing = True
        while self.depth or self._busy:
            await asyncio.sleep(0.005)
        await self.stop()

    async def stop(self) -> None:
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self.depth:  # only after a hard stop: nothing may hang forever
            pending = self._take_now()
            if pending is not None and not pending.future.done():
                pending.future.set_exception(BatcherClosed("the server stopped"))
        if self._own_executor:
            self._executor.shutdown(wait=False)

    # --- the loop ---------------------------------------------------------------------------

    def _take_now(self) -> _Pending | None:
        if self._carry is not None:
            pending, self._carry = self._carry, None
            return pending
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def _collect(self) -> list[_Pending]:
        first = self._take_now() or await self._queue.get()
        self._busy = True  # from here on, a lone newcomer must queue behind this batch
        batch, rows = [first], first.size
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while rows < self.max_batch:
            pending = self._take_now()
            if pending is None:
                remaining = deadline - loop.time()
                if self._announced <= 0 or remaining <= 0:
                    break
                try:
                    pending = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if rows + pending.size > self.max_batch:
                self._carry = pending  # it opens the next batch; order is kept
                break
            batch.append(pending)
            rows += pending.size
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            try:
                if self._on_depth is not None:
                    self._on_depth(self.depth)
                live = [p for p in batch if not p.future.done()]  # a caller may have gone
                if live:
                    await self._run(loop, live)
            finally:
                self._busy = False

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        sizes = [p.size for p in batch]
        try:
            rows = batch[0].rows if len(batch) == 1 else np.concatenate([p.rows for p in batch])
            outputs, seconds = await loop.run_in_executor(self._executor, self._timed_run, rows)
            parts = split_outputs(outputs, sizes)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
                return
            log.warning("batch failed; retrying its requests one by one", extra={"error": str(exc)})
            for pending in batch:
                await self._run(loop, [pending])
            return
        self._record(sum(sizes), len(batch), seconds)
        for pending, part in zip(batch, parts, strict=True):
            _settle(pending, part)


def _settle(pending: _Pending, result: Outputs | BaseException) -> None:
    if pending.future.done():
        return
    if isinstance(result, BaseException):
        pending.future.set_exception(result)
    else:
        pending.future.set_result(result)
