"""The router's client to the model servers: HTTP/1.1 over pooled keep-alive connections.

Why not httpx: on this 2-core machine under load, `httpx.AsyncClient` cost the router about
3 ms of CPU a request (a one-row OIP request: router p50 3.6 ms against 0.4 ms straight to
the model server, at 1 connection), which capped the router near 200 requests a second.
The model servers speak plain HTTP/1.1 with `Content-Length` (or chunked) bodies, so a
small client on asyncio streams does the job for a fraction of that (bench/bench_switch.py).

Errors are three kinds, because the router treats them differently:

- `Refused`: no connection could be made; the request never reached a server, so the
  router may send it elsewhere;
- `TimedOut`: no complete answer in time;
- `Broken`: the server closed or garbled the connection mid-answer.

A kept-alive connection the server closed while idle is detected when nothing at all comes
back; the request is then sent once more on a new connection, as HTTP clients do.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_HEADER_LINES = 200


class UpstreamError(Exception):
    pass


class Refused(UpstreamError):
    pass


class TimedOut(UpstreamError):
    pass


class Broken(UpstreamError):
    pass


class _ClosedBeforeAnswer(Exception):
    """A reused connection gave nothing back: the server had closed it while idle."""


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _split(address: str) -> tuple[str, int]:
    parts = urlsplit(address)
    if parts.scheme != "http" or not parts.hostname:
        raise Refused(f"cannot forward to {address!r}: the router speaks plain http to model servers")
    return parts.hostname, parts.port or 80


class Upstream:
    def __init__(self, *, connect_timeout: float = 2.0, timeout: float = 60.0, max_idle: int = 256) -> None:
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: defaultdict[tuple[str, int], list[Connection]] = defaultdict(list)

    async def _open(self, where: tuple[str, int]) -> Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await asyncio.open_connection(*where)
        except TimeoutError:
            raise Refused(f"connecting to {where[0]}:{where[1]} timed out") from None
        except OSError as exc:
            raise Refused(f"{where[0]}:{where[1]}: {exc.strerror or exc}") from None

    def _checkout(self, where: tuple[str, int]) -> Connection | None:
        idle = self._idle[where]
        while idle:
            reader, writer = idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    def _checkin(self, where: tuple[str, int], connection: Connection) -> None:
        idle = self._idle[where]
        if len(idle) < self.max_idle:
            idle.append(connection)
        else:
            connection[1].close()

    async def request(
        self, address: str, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> Answer:
        where = _split(address)
        head = [f"{method} {target} HTTP/1.1\r\nhost: {where[0]}:{where[1]}\r\n".encode("latin-1")]
        head += [name + b": " + value + b"\r\n" for name, value in headers]
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        message = b"".join(head) + body
        reused = self._checkout(where)
        if reused is not None:
            try:
                return await self._exchange(where, reused, message, reused=True)
            except _ClosedBeforeAnswer:
                pass  # the server had closed it while idle: once more, on a new connection
        try:
            return await self._exchange(where, await self._open(where), message, reused=False)
        except _ClosedBeforeAnswer:
            raise Broken(f"{where[0]}:{where[1]} closed the connection without answering") from None

    async def _exchange(
        self, where: tuple[str, int], connection: Connection, message: bytes, *, reused: bool
    ) -> Answer:
        reader, writer = connection
        keep = False
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    writer.write(message)
                    await writer.drain()
                    status_line = await reader.readline()
                except (ConnectionError, OSError):
                    if reused:
                        raise _ClosedBeforeAnswer from None
                    raise
                if not status_line:
                    if reused:
                        raise _ClosedBeforeAnswer
                    raise Broken(f"{where[0]}:{where[1]} closed the connection without answering")
                answer, keep = await _read_answer(status_line, reader)
        except TimeoutError:
            raise TimedOut(f"{where[0]}:{where[1]} gave no full answer within {self.timeout:.0f} s") from None
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            raise Broken(f"{where[0]}:{where[1]}: {type(exc).__name__}: {exc}") from None
        finally:
            if keep:
                self._checkin(where, connection)
            else:
                writer.close()
        return answer

    async def close(self) -> None:
        for idle in self._idle.values():
            for _, writer in idle:
                writer.close()
        self._idle.clear()


async def _read_answer(status_line: bytes, reader: asyncio.StreamReader) -> tuple[Answer, bool]:
    """The answer after its status line, and whether the connection may be kept."""
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    status = int(parts[1])
    headers: list[tuple[bytes, bytes]] = []
    length: int | None = None
    chunked = False
    keep = parts[0] == b"HTTP/1.1"
    for _ in range(MAX_HEADER_LINES):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep = value.lower() != b"close"
        headers.append((name, value))
    else:
        raise ValueError("too many header lines")
    if chunked:
        body = await _read_chunked(reader)
    elif length is not None:
        body = await reader.readexactly(length)
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body, keep = await reader.read(), False  # delimited by the connection's end
    return Answer(status, headers, body), keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readline()).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readline()
