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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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
        self.start()
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(rows, future))
        if self._on_depth is not None:
            self._on_depth(self.depth)
        return await future

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
            self._busy = True
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
        started = loop.time()
        try:
            rows = batch[0].rows if len(batch) == 1 else np.concatenate([p.rows for p in batch])
            outputs = await loop.run_in_executor(self._executor, self.run_batch, rows)
            parts = split_outputs(outputs, sizes)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
                return
            log.warning("batch failed; retrying its requests one by one", extra={"error": str(exc)})
            for pending in batch:
                await self._run(loop, [pending])
            return
        if self._on_batch is not None:
            self._on_batch(sum(sizes), len(batch), loop.time() - started)
        self.stats.batches += 1
        self.stats.rows += sum(sizes)
        self.stats.requests += len(batch)
        for pending, part in zip(batch, parts, strict=True):
            _settle(pending, part)


def _settle(pending: _Pending, result: Outputs | BaseException) -> None:
    if pending.future.done():
        return
    if isinstance(result, BaseException):
        pending.future.set_exception(result)
    else:
        pending.future.set_result(result)
