"""The router's HTTP/1.1 client against small real servers on loopback: content-length,
chunked and close-delimited answers, a kept-alive connection the server closed while idle
(sent again on a new one), a refused connection, a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from atoll.deployer.routing.upstream import Broken, Refused, TimedOut, Upstream

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    return head + await reader.readexactly(length)


async def serve(handler: Handler, body: Callable[[str], Awaitable[None]]) -> None:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await body(f"http://127.0.0.1:{port}")


def run(handler: Handler, body: Callable[[str], Awaitable[None]]) -> None:
    asyncio.run(serve(handler, body))


def test_content_length_answers_reuse_one_connection() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                request = await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            echo = request.split(b"\r\n\r\n", 1)[1]
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n%s"
                % (len(echo), echo)
            )
            await writer.drain()
        writer.close()

    async def body(address: str) -> None:
        upstream = Upstream()
        for i in range(3):
            answer = await upstream.request(address, "POST", "/x?a=1", [(b"x-one", b"1")], b"hello %d" % i)
            assert (answer.status, answer.body) == (200, b"hello %d" % i)
            assert (b"content-type", b"text/plain") in answer.headers
        await upstream.close()

    run(handler, body)
    assert connections == 1


def test_chunked_and_close_delimited_answers() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        if b"/chunked" in request:
            writer.write(
                b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
        else:
            writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    async def body(address: str) -> None:
        upstream = Upstream()
        chunked = await upstream.request(address, "GET", "/chunked", [], b"")
        assert (chunked.status, chunked.body) == (201, b"hello world")
        closed = await upstream.request(address, "GET", "/old", [], b"")
        assert (closed.status, closed.body) == (200, b"until the end")

    run(handler, body)


def test_a_connection_closed_while_idle_is_retried_on_a_new_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # keep-alive announced, then closed: as a server's idle timeout does

    async def body(address: str) -> None:
        upstream = Upstream()
        for _ in range(3):
            assert (await upstream.request(address, "POST", "/", [], b"x")).body == b"ok"

    run(handler, body)


def test_refused_timeout_and_garbage_are_told_apart() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        if b"/slow" in request:
            await asyncio.sleep(5)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        writer.close()

    async def body(address: str) -> None:
        upstream = Upstream(timeout=0.3)
        with pytest.raises(TimedOut):
            await upstream.request(address, "GET", "/slow", [], b"")
        with pytest.raises(Broken, match=r"not an HTTP/1\.x status line"):
            await upstream.request(address, "GET", "/", [], b"")
        with pytest.raises(Refused):
            await upstream.request("http://127.0.0.1:1", "GET", "/", [], b"")
        with pytest.raises(Refused, match="plain http"):
            await upstream.request("https://127.0.0.1:1", "GET", "/", [], b"")

    run(handler, body)
