"""The micro-batcher: merges requests into model calls, splits results back in order,
isolates a failing request, and respects max_batch and max_wait."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from atoll.deployer.serving.batching import BatcherClosed, MicroBatcher, split_outputs


class Model:
    """Doubles its input; records every call's row count; fails on rows holding -1."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[int] = []
        self.delay = delay
        self.threads: set[str] = set()

    def __call__(self, rows: npt.NDArray[Any]) -> Mapping[str, npt.NDArray[Any]]:
        self.calls.append(len(rows))
        self.threads.add(threading.current_thread().name)
        if self.delay:
            time.sleep(self.delay)
        if (rows == -1).any():
            raise ValueError("poisoned row")
        return {"double": rows * 2, "first": rows[:, 0].copy()}


def rows(start: int, count: int) -> npt.NDArray[np.float32]:
    return np.arange(start, start + count, dtype=np.float32).reshape(count, 1).repeat(3, axis=1)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_split_outputs_cuts_consecutive_slices() -> None:
    outputs = {"a": np.arange(6), "b": np.arange(12).reshape(6, 2)}
    parts = split_outputs(outputs, [1, 3, 2])
    assert [p["a"].tolist() for p in parts] == [[0], [1, 2, 3], [4, 5]]
    assert parts[2]["b"].tolist() == [[8, 9], [10, 11]]
    with pytest.raises(ValueError, match="expected 5"):
        split_outputs(outputs, [2, 3])


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows_in_order() -> None:
    model = Model(delay=0.01)

    async def main() -> list[dict[str, npt.NDArray[Any]]]:
        batcher = MicroBatcher(model, max_batch=64, max_wait_ms=5)
        sizes = [1, 3, 2, 5, 1, 4, 1, 2] * 4
        starts = np.cumsum([0, *sizes[:-1]]) * 10
        results = await asyncio.gather(
            *(batcher.submit(rows(int(s), n)) for s, n in zip(starts, sizes, strict=True))
        )
        for (s, n), result in zip(zip(starts, sizes, strict=True), results, strict=True):
            assert result["double"].tolist() == (rows(int(s), n) * 2).tolist()
            assert result["first"].tolist() == list(range(int(s), int(s) + n))
        assert batcher.stats.requests == len(sizes)
        await batcher.stop()
        return list(results)

    run(main())
    assert len(model.calls) < 8  # 32 requests, merged into a few calls
    assert sum(model.calls) == sum([1, 3, 2, 5, 1, 4, 1, 2] * 4)
    assert model.threads and "MainThread" not in model.threads  # the loop never runs the model


def test_max_batch_is_never_exceeded_and_order_is_kept() -> None:
    model = Model()
    order: list[int] = []

    async def one(batcher: MicroBatcher, i: int) -> None:
        result = await batcher.submit(rows(i, 3))
        order.append(int(result["first"][0]))

    async def main() -> None:
        batcher = MicroBatcher(model, max_batch=8, max_wait_ms=50)
        with batcher.announce():  # more are coming: the batcher waits to fill
            await asyncio.gather(*(one(batcher, i * 100) for i in range(10)))
        await batcher.stop()

    run(main())
    assert max(model.calls) <= 8
    assert sum(model.calls) == 30
    assert model.calls[:4] == [6, 6, 6, 6]  # 3-row requests, 8-row cap: two per call
    assert order == sorted(order)  # first in, first out


def test_a_request_larger_than_max_batch_runs_alone() -> None:
    model = Model()

    async def main() -> None:
        batcher = MicroBatcher(model, max_batch=4, max_wait_ms=0)
        result = await batcher.submit(rows(0, 10))
        assert len(result["double"]) == 10
        await batcher.stop()

    run(main())
    assert model.calls == [10]


def test_a_failing_request_fails_alone() -> None:
    model = Model(delay=0.005)

    async def main() -> list[Any]:
        batcher = MicroBatcher(model, max_batch=64, max_wait_ms=20)
        poisoned = rows(0, 2)
        poisoned[1, 1] = -1
        with batcher.announce():
            results = await asyncio.gather(
                batcher.submit(rows(10, 2)),
                batcher.submit(poisoned),
                batcher.submit(rows(20, 3)),
                return_exceptions=True,
            )
        await batcher.stop()
        return list(results)

    good, bad, other = run(main())
    assert isinstance(bad, ValueError) and "poisoned" in str(bad)
    assert good["first"].tolist() == [10, 11]
    assert other["first"].tolist() == [20, 21, 22]
    assert model.calls[0] == 7  # tried together first, then one by one
    assert sorted(model.calls[1:]) == [2, 2, 3]


def test_a_lone_request_does_not_wait() -> None:
    """Nothing else announced: no max_wait added to a sequential caller's latency."""
    model = Model()

    async def main() -> float:
        batcher = MicroBatcher(model, max_batch=64, max_wait_ms=500)
        await batcher.submit(rows(0, 1))  # warm the thread
        started = time.perf_counter()
        await batcher.submit(rows(0, 1))
        elapsed = time.perf_counter() - started
        await batcher.stop()
        return elapsed

    assert run(main()) < 0.1


def test_max_wait_bounds_the_wait_for_announced_requests() -> None:
    model = Model()

    async def main() -> float:
        batcher = MicroBatcher(model, max_batch=64, max_wait_ms=100)
        with batcher.announce():  # announced but never submitted
            started = time.perf_counter()
            await batcher.submit(rows(0, 1))
            elapsed = time.perf_counter() - started
        await batcher.stop()
        return elapsed

    elapsed = run(main())
    assert 0.09 <= elapsed < 0.5
    assert model.calls == [1]


def test_drain_finishes_queued_requests_then_refuses_new_ones() -> None:
    model = Model(delay=0.01)

    async def main() -> None:
        batcher = MicroBatcher(model, max_batch=2, max_wait_ms=0)
        tasks = [asyncio.ensure_future(batcher.submit(rows(i, 1))) for i in range(9)]
        await asyncio.sleep(0)  # let them queue
        await batcher.drain()
        assert [t.result()["first"].tolist() for t in tasks] == [[i] for i in range(9)]
        with pytest.raises(BatcherClosed):
            await batcher.submit(rows(0, 1))

    run(main())
    assert sum(model.calls) == 9


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(Model(), max_batch=0, max_wait_ms=1)
    with pytest.raises(ValueError, match="max_wait_ms"):
        MicroBatcher(Model(), max_batch=1, max_wait_ms=-1)


def test_a_lone_request_to_a_fast_model_runs_inline_on_the_event_loop_thread() -> None:
    """Once a call has shown the model answers in well under `inline_below_ms`, a caller who
    finds the batcher idle skips the thread hop."""
    model = Model()

    async def main() -> None:
        batcher = MicroBatcher(model, max_batch=64, max_wait_ms=5, inline_below_ms=50)
        first = await batcher.submit(rows(0, 2))  # no measurement yet: the worker thread
        second = await batcher.submit(rows(5, 2))
        assert first["first"].tolist() == [0, 1] and second["first"].tolist() == [5, 6]
        assert batcher.stats.requests == 2 and batcher.stats.rows == 4
        await batcher.stop()

    run(main())
    assert model.threads == {"onnxruntime_0", threading.current_thread().name}


def test_a_slow_model_never_runs_on_the_event_loop_thread() -> None:
    model = Model(delay=0.02)

    async def main() -> None:
        batcher = MicroBatcher(model, max_batch=64, max_wait_ms=5, inline_below_ms=1)
        for i in range(3):
            await batcher.submit(rows(i, 1))
        await batcher.stop()

    run(main())
    assert model.threads and all(n.startswith("onnxruntime") for n in model.threads)


def test_a_newcomer_does_not_overtake_a_batch_being_collected() -> None:
    """A batch waiting for announced rows is busy: the next caller joins the queue, in order."""
    model = Model()

    async def main() -> list[list[float]]:
        batcher = MicroBatcher(model, max_batch=64, max_wait_ms=200, inline_below_ms=1000)
        await batcher.submit(rows(0, 1))  # measure the model: it is fast
        order: list[list[float]] = []

        async def call(start: int) -> None:
            result = await batcher.submit(rows(start, 1))
            order.append(result["first"].tolist())

        with batcher.announce():
            first = asyncio.ensure_future(call(10))
            await asyncio.sleep(0.01)  # the batcher now holds it, waiting for the announced one
        await call(20)
        await first
        await batcher.stop()
        return order

    order = run(main())
    assert order == [[10], [20]]
    assert model.calls[-1] == 2  # the newcomer was merged into the waiting batch


def test_a_request_that_fills_a_batch_runs_inline_even_under_concurrency() -> None:
    """Nothing could be merged with it: a fast model answers it without the thread hop."""
    model = Model()

    async def main() -> None:
        batcher = MicroBatcher(model, max_batch=4, max_wait_ms=50, inline_below_ms=50)
        await batcher.submit(rows(0, 1))  # measured: fast
        model.threads.clear()
        with batcher.announce():  # others on their way: a small request would wait for them
            started = time.perf_counter()
            full = await batcher.submit(rows(10, 4))
            assert time.perf_counter() - started < 0.04  # no max_wait paid
        assert full["first"].tolist() == [10, 11, 12, 13]
        await batcher.stop()

    run(main())
    assert model.threads == {threading.current_thread().name}
