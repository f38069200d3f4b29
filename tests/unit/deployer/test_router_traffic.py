"""The router's traffic rules: unit keys from headers and bodies, sticky choice, the one retry
when a deployment is gone, 503s, and exposures written once per unit and split.

The model servers here are small real HTTP servers on loopback (answering which one they
are, or breaking off mid-request); a refused connection is a port nothing listens on. The
exposure log is the real `BatchWriter` on a migrated SQLite database.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
from sqlalchemy import Engine, select

from atoll.deployer.assignment import assign
from atoll.deployer.routing.app import RouterApp
from atoll.deployer.routing.choice import EndpointRoutes, Route
from atoll.deployer.routing.exposures import ExposureLog
from atoll.deployer.routing.units import is_idempotent, unit_from_body, unit_of
from atoll.events import ExposureEvent

SALT = "salt-1"
INFER = "/v2/models/m/infer"


class TestUnitKeys:
    def test_the_header_wins_over_the_body(self) -> None:
        headers = [(b"x-atoll-unit", b" user-7 ")]
        assert unit_of(headers, b'{"user": "user-9"}', header=b"x-atoll-unit", field="user") == "user-7"
        assert unit_of([], b'{"user": "user-9"}', header=b"x-atoll-unit", field="user") == "user-9"
        assert unit_of([(b"x-session", b"s-1")], b"", header=b"x-session", field=None) == "s-1"
        assert unit_of([], b'{"user": "user-9"}', header=b"x-atoll-unit", field=None) is None

    def test_a_dotted_path_an_oip_tensor_or_parameter_and_numbers_as_their_json_text(self) -> None:
        assert unit_from_body(b'{"customer": {"id": 42}}', "customer.id") == "42"
        oip = {
            "inputs": [
                {"name": "input", "shape": [1, 2], "datatype": "FP32", "data": [0.1, 0.2]},
                {"name": "user_id", "shape": [2, 1], "datatype": "FP64", "data": [[12345.0], [7.0]]},
            ]
        }
        assert unit_from_body(orjson.dumps(oip), "user_id") == "12345"  # the first row's unit
        assert (
            unit_from_body(orjson.dumps({"inputs": [], "parameters": {"session": "s-9"}}), "session") == "s-9"
        )
        assert unit_from_body(b'{"score": 0.25}', "score") == "0.25"

    def test_missing_not_json_or_not_a_scalar_is_no_unit(self) -> None:
        for body in (b"", b"not json", b'{"user": null}', b'{"user": {"id": 1}}', b'{"user": true}', b"[1]"):
            assert unit_from_body(body, "user") is None, body

    def test_prediction_posts_are_idempotent_other_posts_are_not(self) -> None:
        assert is_idempotent("POST", "/v2/models/m/infer")
        assert is_idempotent("POST", "/v2/models/m/versions/3/infer")
        assert is_idempotent("POST", "/invocations")
        assert is_idempotent("GET", "/v2/models/m")
        assert not is_idempotent("POST", "/v2/repository/models/m/load")
        assert not is_idempotent("PATCH", "/invocations")


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def json_server(answer: Callable[[list[bytes]], object]) -> Handler:
    """A keep-alive HTTP/1.1 server answering each request with `answer(its header lines)` as JSON."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
                length = next(
                    (int(h.split(b":")[1]) for h in lines if h.lower().startswith(b"content-length")), 0
                )
                await reader.readexactly(length)
                body = orjson.dumps(answer(lines))
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return handler


def answering(name: str) -> Handler:
    return json_server(lambda _lines: {"served_by": name})


#: Answers with every `x-atoll-unit` header the request carried (what the model server logs).
echoing_unit = json_server(
    lambda lines: {
        "units": [
            h.split(b":", 1)[1].strip().decode() for h in lines if h.lower().startswith(b"x-atoll-unit:")
        ]
    }
)


async def breaking(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Takes the request, then the process 'dies': the connection closes with no answer."""
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


def refusing_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # closed again: connecting is refused


@asynccontextmanager
async def servers(**handlers: Handler) -> AsyncIterator[dict[str, str]]:
    started = {name: await asyncio.start_server(h, "127.0.0.1", 0) for name, h in handlers.items()}
    try:
        yield {name: f"http://127.0.0.1:{s.sockets[0].getsockname()[1]}" for name, s in started.items()}
    finally:
        for server in started.values():
            server.close()


def table(routes: dict[str, tuple[int, str]], **settings: Any) -> dict[str, EndpointRoutes]:
    found = tuple(Route(name, weight, address, True) for name, (weight, address) in routes.items())
    return {"scoring": EndpointRoutes("scoring", found, salt=SALT, **settings)}


@asynccontextmanager
async def router(
    loader: Callable[[], dict[str, EndpointRoutes]], exposures: ExposureLog | None = None
) -> AsyncIterator[tuple[RouterApp, httpx.AsyncClient]]:
    app = RouterApp(loader, exposures=exposures)
    await app.startup()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://router"
        ) as client:
            yield app, client
    finally:
        await app.shutdown()


def metric(app: RouterApp, name: str, **labels: str) -> float:
    return app.metrics.registry.get_sample_value(name, labels) or 0.0


class TestForwardedUnit:
    def test_the_model_server_gets_the_unit_the_split_used_in_x_atoll_unit_once(self) -> None:
        async def body() -> None:
            async with servers(one=echoing_unit) as at:
                by_field = table({"one": (100, at["one"])}, unit_field="user.id")
                async with router(lambda: by_field) as (_, client):
                    answer = await client.post(f"/endpoints/scoring{INFER}", json={"user": {"id": 7}})
                    assert answer.json() == {"units": ["7"]}
                    anonymous = await client.post(f"/endpoints/scoring{INFER}", json={})
                    assert anonymous.json() == {"units": []}
                by_header = table({"one": (100, at["one"])}, unit_header=b"x-session")
                async with router(lambda: by_header) as (_, client):
                    answer = await client.post(
                        f"/endpoints/scoring{INFER}",
                        headers={"x-session": "s-1", "x-atoll-unit": "not-the-split-unit"},
                        json={},
                    )
                    assert answer.json() == {"units": ["s-1"]}

        asyncio.run(body())


class TestStickyChoice:
    def test_a_unit_goes_where_assignment_says_in_every_router(self) -> None:
        async def body() -> None:
            async with servers(blue=answering("blue"), green=answering("green")) as at:
                routes = table({"blue": (50, at["blue"]), "green": (50, at["green"])})
                async with router(lambda: routes) as (_, first), router(lambda: routes) as (_, second):
                    for unit in [f"user-{i}" for i in range(40)]:
                        expected = assign(SALT, unit, {"blue": 50, "green": 50})
                        for client in (first, second, first):
                            answer = await client.post(
                                f"/endpoints/scoring{INFER}", headers={"x-atoll-unit": unit}, json={}
                            )
                            assert answer.headers["x-atoll-deployment"] == expected
                            assert answer.json() == {"served_by": expected}

        asyncio.run(body())

    def test_the_endpoints_unit_field_and_a_too_long_key(self) -> None:
        async def body() -> None:
            async with servers(blue=answering("blue"), green=answering("green")) as at:
                routes = table({"blue": (30, at["blue"]), "green": (70, at["green"])}, unit_field="user.id")
                async with router(lambda: routes) as (app, client):
                    for i in range(20):
                        answer = await client.post(f"/endpoints/scoring{INFER}", json={"user": {"id": i}})
                        assert answer.headers["x-atoll-deployment"] == assign(
                            SALT, str(i), {"blue": 30, "green": 70}
                        )
                    long = await client.post(
                        f"/endpoints/scoring{INFER}", headers={"x-atoll-unit": "u" * 129}, json={}
                    )
                    assert long.status_code == 400
                    assert long.headers["content-type"] == "application/problem+json"
                    assert "129 characters; at most 128" in long.json()["detail"]
                    assert (
                        metric(
                            app,
                            "atoll_router_errors_total",
                            endpoint="scoring",
                            deployment="-",
                            kind="bad_unit",
                        )
                        == 1
                    )

        asyncio.run(body())


class TestGoneDeployments:
    def test_a_refused_connection_is_served_by_the_other_deployment_and_counted(self) -> None:
        async def body() -> None:
            async with servers(green=answering("green")) as at:
                routes = table({"blue": (50, refusing_address()), "green": (50, at["green"])})
                async with router(lambda: routes) as (app, client):
                    for i in range(30):
                        answer = await client.post(
                            f"/endpoints/scoring{INFER}", headers={"x-atoll-unit": f"u{i}"}, json={}
                        )
                        assert answer.status_code == 200 and answer.headers["x-atoll-deployment"] == "green"
                    blue_units = sum(
                        assign(SALT, f"u{i}", {"blue": 50, "green": 50}) == "blue" for i in range(30)
                    )
                    assert blue_units > 0
                    labels = {"endpoint": "scoring", "deployment": "blue"}
                    assert metric(app, "atoll_router_retries_total", **labels, outcome="served") == blue_units
                    assert metric(app, "atoll_router_errors_total", **labels, kind="connect") == blue_units

        asyncio.run(body())

    def test_broken_mid_request_is_retried_only_when_the_call_is_idempotent(self) -> None:
        async def body() -> None:
            async with servers(blue=breaking, green=answering("green")) as at:
                routes = table({"blue": (100, at["blue"]), "green": (0, at["green"])})
                async with router(lambda: routes) as (app, client):
                    # green has no weight: nothing to retry on, so even a prediction is a 503
                    answer = await client.post(f"/endpoints/scoring{INFER}", json={})
                    assert answer.status_code == 503
                    assert "blue broke off the call" in answer.json()["detail"]
                    assert "no other ready deployment" in answer.json()["detail"]
                    assert answer.json()["tried"] == ["blue"]
                routes = table({"blue": (50, at["blue"]), "green": (50, at["green"])})
                async with router(lambda: routes) as (app, client):
                    blue_unit = next(
                        u
                        for u in (f"u{i}" for i in range(100))
                        if assign(SALT, u, {"blue": 50, "green": 50}) == "blue"
                    )
                    unit = {"x-atoll-unit": blue_unit}
                    served = await client.post(f"/endpoints/scoring{INFER}", headers=unit, json={})
                    assert served.status_code == 200 and served.headers["x-atoll-deployment"] == "green"
                    refused = await client.post(
                        "/endpoints/scoring/v2/repository/models/m/load", headers=unit, json={}
                    )
                    assert refused.status_code == 503
                    assert refused.headers["content-type"] == "application/problem+json"
                    assert (
                        "not retried: POST /v2/repository/models/m/load may have reached it"
                        in refused.json()["detail"]
                    )
                    labels = {"endpoint": "scoring", "deployment": "blue"}
                    assert metric(app, "atoll_router_errors_total", **labels, kind="unavailable") == 1

        asyncio.run(body())

    def test_when_both_are_gone_the_answer_is_503_naming_them(self) -> None:
        async def body() -> None:
            routes = table({"blue": (50, refusing_address()), "green": (50, refusing_address())})
            async with router(lambda: routes) as (app, client):
                answer = await client.post(f"/endpoints/scoring{INFER}", json={})
                assert answer.status_code == 503
                assert sorted(answer.json()["tried"]) == ["blue", "green"]
                assert "refused the connection" in answer.json()["detail"]
                retried = answer.json()["tried"][0]
                labels = {"endpoint": "scoring", "deployment": retried}
                assert metric(app, "atoll_router_retries_total", **labels, outcome="failed") == 1

        asyncio.run(body())


class TestExposures:
    def test_one_row_per_unit_and_split_and_none_for_a_retried_request(self, engine: Engine) -> None:
        exposures = ExposureLog.for_engine(engine, remembered=1000)

        async def body() -> RouterApp:
            async with servers(blue=answering("blue"), green=answering("green")) as at:
                routes = table({"blue": (50, at["blue"]), "green": (50, at["green"])})
                async with router(lambda: routes, exposures) as (app, client):
                    for _ in range(3):
                        for i in range(20):
                            await client.post(
                                f"/endpoints/scoring{INFER}", headers={"x-atoll-unit": f"u{i}"}, json={}
                            )
                    await client.post(f"/endpoints/scoring{INFER}", json={})  # no unit: no exposure
                    return app

        app = asyncio.run(body())  # shutdown closed the writer: its queue is flushed
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    ExposureEvent.unit_id,
                    ExposureEvent.deployment,
                    ExposureEvent.split,
                    ExposureEvent.endpoint,
                )
            ).all()
        assert sorted(r.unit_id for r in rows) == sorted(f"u{i}" for i in range(20))
        for row in rows:
            assert row.deployment == assign(SALT, row.unit_id, {"blue": 50, "green": 50})
            assert (row.split, row.endpoint) == (SALT, "scoring")
        assert metric(app, "atoll_router_exposures_written_total") == 20
        assert metric(app, "atoll_router_exposures_dropped_total") == 0

    def test_the_remembered_set_is_bounded(self) -> None:
        log = ExposureLog(None, remembered=2)
        assert not log.record(endpoint="e", split="s", deployment="d", unit="u")  # no writer: nothing

        class Sink:
            def __init__(self) -> None:
                self.rows: list[dict[str, Any]] = []

            def submit(self, row: dict[str, Any]) -> None:
                self.rows.append(row)

        sink = Sink()
        log = ExposureLog(sink, remembered=2)  # type: ignore[arg-type]  # a list stands in for the DB writer
        assert [log.record(endpoint="e", split="s", deployment="d", unit=u) for u in ("a", "b", "a", "c", "a")] == [
            True, True, False, True, False
        ]  # fmt: skip
        assert log.record(endpoint="e", split="s", deployment="d", unit="b")  # evicted by "c": written again
        assert log.record(endpoint="e", split="other", deployment="d", unit="a")  # another split
        assert len(sink.rows) == 5
