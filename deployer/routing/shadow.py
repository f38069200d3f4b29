"""Shadow traffic in the router: mirror a share of an endpoint's requests to a candidate, compare.

After the caller has the primary's answer (the router sends it first), `ShadowMirror.after`
draws whether this request is mirrored (`share`) and, if so, starts an asyncio task that
sends the same request to the candidate and compares the two predictions (`compare`). The
caller's path never awaits it: the only cost there is the draw and the task's creation,
and the task's CPU on the same event loop (bench/bench_shadow.py measures it). Mirrors are
bounded (`max_in_flight`; beyond it a mirror is skipped and counted), time out
(`timeout_seconds`), and only successful primary answers are mirrored. Each comparison is
a `ShadowComparison` row handed to a `BatchWriter` (batched inserts off the event loop).

`compare` is pure. It reads Open Inference Protocol v2 answers (`outputs`) and MLflow
scoring answers (`predictions`):

- label: integer, boolean or string outputs, compared element by element → agreement;
- score: float outputs → the largest absolute difference;
- ranking: per row, the top-k items (by score for float outputs, in order for id lists)
  → overlap@k = |top-k(primary) ∩ top-k(candidate)| / k, averaged over rows.
`auto` compares labels when the answers have any (and reports the scores' difference
too), else scores.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, select

from atoll.db import utcnow
from atoll.deployer.models import Deployment, Endpoint, Shadow
from atoll.deployer.routing.upstream import Answer, Upstream

log = logging.getLogger("atoll.router")

Scope = MutableMapping[str, Any]
Sink = Callable[[dict[str, Any]], None]
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"te", b"transfer-encoding", b"upgrade", b"host"})
SHADOW_HEADER = b"x-atoll-shadow"
_LABEL_TYPES = ("INT", "UINT", "BOOL", "BYTES")


# --- comparing two answers (pure) ------------------------------------------------------------


@dataclass(frozen=True)
class Output:
    shape: tuple[int, ...]
    data: list[Any]  # flat, row-major

    @property
    def is_label(self) -> bool:
        return bool(self.data) and all(isinstance(v, (bool, int, str)) for v in self.data)

    def rows(self) -> list[list[Any]]:
        width = self.shape[-1] if len(self.shape) > 1 else 1
        return [self.data[i : i + width] for i in range(0, len(self.data), width)]


@dataclass(frozen=True)
class Comparison:
    kind: str  # label | score | ranking
    agreement: float | None = None
    max_abs_diff: float | None = None
    rank_overlap: float | None = None


def _flatten(value: Any) -> tuple[tuple[int, ...], list[Any]]:
    if not isinstance(value, list):
        return (), [value]
    if value and isinstance(value[0], list):
        inner = [_flatten(v) for v in value]
        return (len(value), *inner[0][0]), [x for _, data in inner for x in data]
    return (len(value),), list(value)


def outputs_of(answer: Any) -> dict[str, Output]:
    """The named outputs of an OIP v2 or MLflow scoring answer (ValueError for anything else)."""
    if isinstance(answer, dict) and isinstance(answer.get("outputs"), list):
        found = {}
        for out in answer["outputs"]:
            shape, data = _flatten(out.get("data", []))
            declared = tuple(int(s) for s in out.get("shape", shape))
            datatype = str(out.get("datatype", ""))
            if datatype.startswith(_LABEL_TYPES) and datatype != "BYTES":
                data = [int(v) for v in data]
            found[str(out["name"])] = Output(declared or shape, data)
        return found
    if isinstance(answer, dict) and "predictions" in answer:
        predictions = answer["predictions"]
        if isinstance(predictions, list) and predictions and isinstance(predictions[0], dict):
            keys = list(predictions[0])
            return {k: Output(*_flatten([row.get(k) for row in predictions])) for k in keys}
        if isinstance(predictions, dict):
            return {k: Output(*_flatten(v)) for k, v in predictions.items()}
        return {"predictions": Output(*_flatten(predictions))}
    raise ValueError("not an OIP v2 or MLflow scoring answer (no 'outputs' or 'predictions')")


def _common(primary: dict[str, Output], candidate: dict[str, Output]) -> list[tuple[Output, Output]]:
    names = [n for n in primary if n in candidate]
    if not names:
        raise ValueError(f"no output in common (primary: {sorted(primary)}, candidate: {sorted(candidate)})")
    pairs = [(primary[n], candidate[n]) for n in names]
    for (a, b), name in zip(pairs, names, strict=True):
        if len(a.data) != len(b.data):
            raise ValueError(f"output {name!r}: {len(a.data)} values against {len(b.data)}")
    return pairs


def label_agreement(pairs: list[tuple[Output, Output]]) -> float:
    equal = total = 0
    for a, b in pairs:
        equal += sum(1 for x, y in zip(a.data, b.data, strict=True) if x == y)
        total += len(a.data)
    return equal / total if total else 1.0


def max_abs_diff(pairs: list[tuple[Output, Output]]) -> float:
    return max(
        (abs(float(x) - float(y)) for a, b in pairs for x, y in zip(a.data, b.data, strict=True)),
        default=0.0,
    )


def _top(row: list[Any], k: int) -> set[Any]:
    if row and all(isinstance(v, float) for v in row):  # scores over items: the k best indices
        return set(sorted(range(len(row)), key=lambda i: (-row[i], i))[:k])
    return set(row[:k])  # item ids, best first


def rank_overlap(pairs: list[tuple[Output, Output]], k: int) -> float:
    overlaps = []
    for a, b in pairs:
        for row_a, row_b in zip(a.rows(), b.rows(), strict=True):
            depth = min(k, len(row_a))
            if depth:
                overlaps.append(len(_top(row_a, depth) & _top(row_b, depth)) / depth)
    return sum(overlaps) / len(overlaps) if overlaps else 1.0


def compare(primary: Any, candidate: Any, *, kind: str = "auto", top_k: int = 10) -> Comparison:
    """Compare two parsed answers; ValueError when they cannot be (other outputs, other sizes)."""
    pairs = _common(outputs_of(primary), outputs_of(candidate))
    labels = [(a, b) for a, b in pairs if a.is_label and b.is_label]
    scores = [(a, b) for a, b in pairs if not (a.is_label or b.is_label)]
    if kind == "ranking":
        return Comparison("ranking", rank_overlap=rank_overlap(pairs, top_k))
    if kind == "label" or (kind == "auto" and labels):
        if not labels:
            raise ValueError("no label output to compare (integer, boolean or string values)")
        return Comparison("label", label_agreement(labels), max_abs_diff(scores) if scores else None)
    if not scores:
        raise ValueError("no score output to compare (float values)")
    return Comparison("score", None, max_abs_diff(scores))


# --- the router's side -----------------------------------------------------------------------


@dataclass(frozen=True)
class ShadowTarget:
    endpoint: str
    candidate: str
    address: str | None  # None while the candidate is not available
    share: float
    kind: str
    top_k: int


def load_shadows(engine: Engine) -> dict[str, ShadowTarget]:
    """Every active shadow, by endpoint, in one query (the router reads it with its table)."""
    query = (
        select(
            Endpoint.name,
            Shadow.candidate,
            Deployment.address,
            Deployment.state,
            Shadow.share,
            Shadow.kind,
            Shadow.top_k,
        )
        .select_from(Shadow)
        .join(Endpoint, Endpoint.id == Shadow.endpoint_id)
        .outerjoin(Deployment, Deployment.name == Shadow.candidate)
        .where(Shadow.state == "active")
    )
    found = {}
    with engine.connect() as connection:
        for endpoint, candidate, address, state, share, kind, top_k in connection.execute(query):
            ready = address if state == "available" else None
            found[endpoint] = ShadowTarget(endpoint, candidate, ready, float(share), kind, int(top_k))
    return found


class ShadowMirror:
    def __init__(
        self,
        loader: Callable[[], dict[str, ShadowTarget]],
        sink: Sink,
        *,
        max_in_flight: int = 64,
        timeout_seconds: float = 5.0,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.loader = loader
        self.sink = sink
        self.targets: dict[str, ShadowTarget] = {}
        self.max_in_flight = max_in_flight
        self.timeout_seconds = timeout_seconds
        self.draw = draw
        self.upstream = Upstream(connect_timeout=1.0, timeout=timeout_seconds, max_idle=max_in_flight)
        self.in_flight = 0
        self.skipped = 0  # mirrors not sent: too many in flight
        self._tasks: set[asyncio.Task[None]] = set()

    async def refresh(self) -> None:
        try:
            self.targets = await asyncio.to_thread(self.loader)
        except Exception as exc:  # keep the last table; the router's own refresh logs the database
            log.warning("shadow table not refreshed", extra={"error": str(exc)[:300]})

    def after(
        self,
        scope: Scope,
        rest: str,
        body: bytes,
        request_id: str,
        endpoint: str,
        primary: str,
        answer: Answer,
        primary_seconds: float,
    ) -> None:
        """Called once the caller has the primary's answer: maybe start one mirror, never wait."""
        target = self.targets.get(endpoint)
        if target is None or target.address is None or target.candidate == primary or answer.status != 200:
            return
        if self.draw() >= target.share:
            return
        if self.in_flight >= self.max_in_flight:
            self.skipped += 1
            return
        self.in_flight += 1
        task = asyncio.create_task(
            self._mirror(target, scope, rest, body, request_id, primary, answer.body, primary_seconds)
        )
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.in_flight -= 1

    async def _mirror(
        self,
        target: ShadowTarget,
        scope: Scope,
        rest: str,
        body: bytes,
        request_id: str,
        primary: str,
        primary_body: bytes,
        primary_seconds: float,
    ) -> None:
        assert target.address is not None
        query = scope.get("query_string", b"")
        path = f"/{rest}" + (f"?{query.decode('latin-1')}" if query else "")
        headers = [
            (k, v)
            for k, v in scope["headers"]
            if k.lower() not in HOP_BY_HOP and k.lower() not in (b"content-length", b"x-request-id")
        ]
        headers += [(b"x-request-id", request_id.encode()), (SHADOW_HEADER, b"1")]
        row: dict[str, Any] = {
            "ts": utcnow(),
            "endpoint": target.endpoint,
            "candidate": target.candidate,
            "primary_deployment": primary,
            "request_id": request_id,
            "kind": None,
            "agreement": None,
            "max_abs_diff": None,
            "rank_overlap": None,
            "primary_latency_ms": primary_seconds * 1000.0,
            "candidate_latency_ms": None,
            "candidate_status": 0,
            "error": None,
        }
        started = time.perf_counter()
        try:
            answer = await asyncio.wait_for(
                self.upstream.request(target.address, scope["method"], path, headers, body),
                self.timeout_seconds,
            )
        except Exception as exc:  # refused, timed out, broken: the candidate did not answer
            row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            self.sink(row)
            return
        row["candidate_latency_ms"] = (time.perf_counter() - started) * 1000.0
        row["candidate_status"] = answer.status
        if answer.status != 200:
            row["error"] = answer.body[:300].decode("utf-8", "replace")
        else:
            try:
                found = compare(
                    orjson.loads(primary_body),
                    orjson.loads(answer.body),
                    kind=target.kind,
                    top_k=target.top_k,
                )
                row.update(
                    kind=found.kind,
                    agreement=found.agreement,
                    max_abs_diff=found.max_abs_diff,
                    rank_overlap=found.rank_overlap,
                )
            except ValueError as exc:  # orjson.JSONDecodeError is one too
                row["error"] = f"not compared: {str(exc)[:300]}"
        self.sink(row)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.upstream.close()


def from_engine(engine: Engine) -> ShadowMirror:
    """The router's mirror over the platform database: shadows read from it, comparisons written to it."""
    from atoll.db import make_session_factory
    from atoll.deployer.models import ShadowComparison
    from atoll.events import BatchWriter

    writer = BatchWriter(make_session_factory(engine), ShadowComparison, max_batch=500, flush_seconds=0.5)
    return ShadowMirror(lambda: load_shadows(engine), writer.submit)
