"""The HTTP/1.1 client against real servers on loopback.

Two peers: uvicorn (httptools) serving a raw ASGI app in a thread with its own loop, for the
behaviour of a real model server; and a raw asyncio socket server in the test's own loop, for
byte-exact requests and the failures uvicorn would never produce on purpose.
Every test runs on the default loop and on uvloop (sagehost serves on uvloop).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
import uvloop

from sagehost.core.errors import ContainerTimeout, ContainerUnreachable
from sagehost.core.ports import ContainerRequest
from sagehost.workers.client import ContainerClient
from sagehost.workers.http1 import (
    HIGH_WATER,
    MAX_CHUNK,
    Body,
    BodyLengthMismatch,
    BodyTooLarge,
    ConnectionLost,
    ConnectionPool,
    Origin,
    PoolClosed,
    StaleConnection,
)

Main = Callable[[], Awaitable[None]]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]

# --- uvicorn peer --------------------------------------------------------------------------------


class EchoApp:
    """Raw ASGI app; records the client address of every request (one per connection).

    ``/reject`` answers 413 without reading the body. ``/hold`` reads the body as it comes,
    counting it in ``consumed``; past ``hold_at`` bytes it sets ``held`` and reads no more
    until ``release`` is set, then answers the body's length and SHA-256.
    """

    def __init__(self) -> None:
        self.clients: list[tuple[str, int]] = []
        self.disconnects = 0
        self.consumed = 0
        self.hold_at = 0
        self.held = threading.Event()
        self.release = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        host, port = scope["client"]
        self.clients.append((host, port))
        if scope["path"] == "/reject":
            headers = [(b"content-type", b"text/plain"), (b"content-length", b"9")]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            await send({"type": "http.response.body", "body": b"too large"})
            return
        if scope["path"] == "/hold":
            await self._hold(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path == "/slow":  # answers only when the client goes away
            if (await receive())["type"] == "http.disconnect":
                self.disconnects += 1
            return
        headers = [(b"content-type", b"application/octet-stream")]
        if path == "/echo":
            received = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
            headers.append((b"x-received", json.dumps(received).encode()))
        elif path == "/close":
            headers.append((b"connection", b"close"))
        if path == "/chunked":  # no Content-Length: uvicorn frames it chunked
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            half = len(body) // 2
            await send({"type": "http.response.body", "body": body[:half], "more_body": True})
            await send({"type": "http.response.body", "body": body[half:], "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _hold(self, receive: Any, send: Any) -> None:
        self.consumed = 0
        digest = hashlib.sha256()
        while True:
            message = await receive()
            piece = message.get("body", b"")
            digest.update(piece)
            self.consumed += len(piece)
            if self.consumed >= self.hold_at and not self.release.is_set():
                self.held.set()
                await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 10)
            if not message.get("more_body"):
                break
        answer = json.dumps({"length": self.consumed, "sha256": digest.hexdigest()}).encode()
        headers = [(b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


class Uvicorn:
    def __init__(self, app: EchoApp, origin: Origin) -> None:
        self.app = app
        self.origin = origin

    def ports(self) -> set[int]:
        return {port for _, port in self.app.clients}


@pytest.fixture(scope="module")
def uvicorn_server() -> Iterator[Uvicorn]:
    app = EchoApp()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        server_header=False,
        date_header=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield Uvicorn(app, Origin("127.0.0.1", sock.getsockname()[1]))
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# --- raw asyncio peer ----------------------------------------------------------------------------


class RawServer:
    """``handle(reader, writer, n)`` serves the n-th connection; counts connections and EOFs."""

    def __init__(self, handle: Handler) -> None:
        self.handle = handle
        self.connections = 0
        self.origin = Origin("127.0.0.1", 0)
        self._tasks: set[asyncio.Task[None]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = self.connections
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handle(reader, writer, n)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[RawServer]:
    raw = RawServer(handle)
    server = await asyncio.start_server(raw._serve, "127.0.0.1", 0)
    raw.origin = Origin("127.0.0.1", server.sockets[0].getsockname()[1])
    try:
        yield raw
    finally:
        server.close()
        for task in raw._tasks:
            task.cancel()
        await asyncio.gather(*raw._tasks, return_exceptions=True)


@asynccontextmanager
async def open_pool(**kw: Any) -> AsyncIterator[ConnectionPool]:
    """A pool, closed once the block ends normally (a failing test leaves it as it was)."""
    pool = ConnectionPool(**kw)
    yield pool
    await pool.close()


@asynccontextmanager
async def raw_pool(handle: Handler, **kw: Any) -> AsyncIterator[tuple[RawServer, ConnectionPool]]:
    """A raw server serving ``handle`` and a pool; the pool is closed before the server."""
    async with raw_server(handle) as server, open_pool(**kw) as pool:
        yield server, pool


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One whole request (head and Content-Length body) as bytes."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


async def serve_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        request = await read_request(reader)
        writer.write(ok(request.rsplit(b"\r\n\r\n", 1)[1]))


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# --- running ------------------------------------------------------------------------------------


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Main], None]:
    factory = uvloop.new_event_loop if request.param == "uvloop" else None

    def run(main: Main) -> None:
        async def bounded() -> None:
            async with asyncio.timeout(15):
                await main()

        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(bounded())

    return run


async def eventually(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def post(pool: ConnectionPool, origin: Origin, path: str, body: Body = b"", **kw: Any) -> Any:
    kw.setdefault("timeout_s", 5.0)
    kw.setdefault("max_body", 4 << 20)
    return await pool.request(origin, "POST", path, kw.pop("headers", ()), body, **kw)


# --- against uvicorn -----------------------------------------------------------------------------


def test_one_mib_round_trip_read_whole_and_streamed(
    uvicorn_server: Uvicorn, run: Callable[[Main], None]
) -> None:
    origin = uvicorn_server.origin
    body = bytes(range(256)) * 4096

    async def main() -> None:
        async with open_pool() as pool:
            headers = [("Content-Type", "application/x-npy"), ("X-Amzn-Custom", "a=1; b=2")]
            response = await post(pool, origin, "/echo", body, headers=headers)
            assert response.status == 200
            assert response.body == body
            assert json.loads(response.headers["x-received"]) == [
                ["host", f"127.0.0.1:{origin.port}"],
                ["content-type", "application/x-npy"],
                ["x-amzn-custom", "a=1; b=2"],
                ["content-length", "1048576"],
            ]
            async with pool.stream(origin, "POST", "/echo", (), body, deadline=None) as stream:
                assert stream.status == 200
                assert stream.headers["content-length"] == "1048576"
                assert b"".join([chunk async for chunk in stream]) == body
            assert pool.connections == 1

    run(main)


def test_keep_alive_reuses_one_connection(
    uvicorn_server: Uvicorn, run: Callable[[Main], None]
) -> None:
    origin = uvicorn_server.origin

    async def main() -> None:
        uvicorn_server.app.clients.clear()
        async with open_pool() as pool:
            for i in range(10):
                assert (await post(pool, origin, "/echo", b"%d" % i)).body == b"%d" % i
            async with pool.stream(origin, "POST", "/chunked", (), b"abcd", deadline=None) as s:
                assert [chunk async for chunk in s] == [b"ab", b"cd"]
            assert len(uvicorn_server.app.clients) == 11
            assert len(uvicorn_server.ports()) == 1
            assert (pool.connections, pool.idle(origin)) == (1, 1)

    run(main)


def test_connection_close_response_is_not_reused(
    uvicorn_server: Uvicorn, run: Callable[[Main], None]
) -> None:
    origin = uvicorn_server.origin

    async def main() -> None:
        uvicorn_server.app.clients.clear()
        async with open_pool() as pool:
            first = await post(pool, origin, "/close", b"1")
            assert (first.body, first.headers["connection"]) == (b"1", "close")
            assert pool.idle(origin) == 0
            assert (await post(pool, origin, "/close", b"2")).body == b"2"
            assert len(uvicorn_server.ports()) == 2

    run(main)


def test_chunked_response_read_whole(uvicorn_server: Uvicorn, run: Callable[[Main], None]) -> None:
    async def main() -> None:
        async with open_pool() as pool:
            response = await post(pool, uvicorn_server.origin, "/chunked", b"x" * 100_001)
            assert response.headers["transfer-encoding"] == "chunked"
            assert response.body == b"x" * 100_001
            assert pool.idle(uvicorn_server.origin) == 1

    run(main)


@pytest.mark.parametrize("path", ["/echo", "/chunked"])
def test_max_size_exceeded_raises_and_drops_the_connection(
    uvicorn_server: Uvicorn, run: Callable[[Main], None], path: str
) -> None:
    origin = uvicorn_server.origin

    async def main() -> None:
        uvicorn_server.app.clients.clear()
        async with open_pool() as pool:
            assert (await post(pool, origin, path, b"a" * 1000, max_body=1000)).body == b"a" * 1000
            with pytest.raises(BodyTooLarge) as too_large:
                await post(pool, origin, path, b"a" * 1001, max_body=1000)
            assert too_large.value.limit == 1000
            await eventually(lambda: pool.connections == 0)
            assert (await post(pool, origin, path, b"ok")).body == b"ok"
            assert len(uvicorn_server.ports()) == 2  # the connection that overflowed was not reused

    run(main)


def test_timeout_raises_and_the_next_call_works(
    uvicorn_server: Uvicorn, run: Callable[[Main], None]
) -> None:
    origin = uvicorn_server.origin
    app = uvicorn_server.app

    async def main() -> None:
        async with open_pool() as pool:
            await post(pool, origin, "/echo")
            disconnects = app.disconnects
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await post(pool, origin, "/slow", timeout_s=0.2)
            assert 0.18 <= time.monotonic() - started < 1.0  # loop clock may lag a few ms
            await eventually(lambda: app.disconnects == disconnects + 1)  # closed, never reused
            assert pool.connections == 0
            assert (await post(pool, origin, "/echo", b"after")).body == b"after"

    run(main)


def test_cancelled_call_closes_its_connection(
    uvicorn_server: Uvicorn, run: Callable[[Main], None]
) -> None:
    origin = uvicorn_server.origin
    app = uvicorn_server.app

    async def main() -> None:
        async with open_pool() as pool:
            await post(pool, origin, "/echo")
            calls, disconnects = len(app.clients), app.disconnects
            call = asyncio.create_task(post(pool, origin, "/slow"))
            await eventually(lambda: len(app.clients) == calls + 1)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await eventually(lambda: app.disconnects == disconnects + 1)
            assert (pool.connections, pool.idle(origin)) == (0, 0)
            assert (await post(pool, origin, "/echo", b"after")).body == b"after"

    run(main)


# --- against a raw socket server -----------------------------------------------------------------


def test_request_bytes_are_exact_and_response_names_lower_cased(
    run: Callable[[Main], None],
) -> None:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        seen.append(await read_request(reader))
        writer.write(
            b"HTTP/1.1 201 Created\r\nX-Mixed-Case: V a\r\nSet-Cookie: a=1\r\n"
            b"set-cookie: b=2\r\nContent-Length: 2\r\n\r\nok"
        )
        await serve_forever(reader, writer)

    async def main() -> None:
        async with raw_pool(handle) as (server, pool):
            headers = [("Content-Type", "text/csv"), ("X-Amzn-SageMaker-Custom-Attributes", "x")]
            response = await post(pool, server.origin, "/invocations", b"a,b\r\n", headers=headers)
            assert seen == [
                b"POST /invocations HTTP/1.1\r\n"
                b"Host: 127.0.0.1:%d\r\n"
                b"Content-Type: text/csv\r\n"
                b"X-Amzn-SageMaker-Custom-Attributes: x\r\n"
                b"Content-Length: 5\r\n\r\na,b\r\n" % server.origin.port
            ]
            assert response.status == 201
            assert response.headers == {
                "x-mixed-case": "V a",
                "set-cookie": "a=1, b=2",
                "content-length": "2",
            }
            assert response.body == b"ok"

    run(main)


@pytest.mark.parametrize(
    "headers",
    [
        [("X-A", "1\r\nX-Injected: 1")],
        [("X-A", "1\nX-Injected: 1")],
        [("X-A", "nul\x00")],
        [("X-A\r\nX-Injected", "1")],
        [("X A", "1")],
        [("X-A:", "1")],
        [("", "1")],
        [("Content-Length", "0")],
        [("transfer-encoding", "chunked")],
        [("Host", "elsewhere")],
    ],
)
def test_header_injection_raises_before_any_io(
    run: Callable[[Main], None], headers: list[tuple[str, str]]
) -> None:
    async def main() -> None:
        async with raw_pool(serve_forever_handler) as (server, pool):
            with pytest.raises(ValueError):
                await post(pool, server.origin, "/invocations", b"x", headers=headers)
            with pytest.raises(ValueError):
                await post(pool, server.origin, "/a b", b"x")
            assert (server.connections, pool.connections) == (0, 0)

    run(main)


async def serve_forever_handler(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int
) -> None:
    await serve_forever(reader, writer)


def test_stream_yields_each_chunk_before_the_next_is_sent(run: Callable[[Main], None]) -> None:
    got_first = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await got_first.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await serve_forever(reader, writer)

    async def main() -> None:
        got_first.clear()
        async with raw_pool(handle) as (server, pool):
            chunks = []
            async with pool.stream(server.origin, "POST", "/", (), b"", deadline=None) as stream:
                assert stream.headers == {"transfer-encoding": "chunked"}
                async for chunk in stream:
                    chunks.append(chunk)
                    got_first.set()
            assert chunks == [b"first", b"second"]
            assert pool.idle(server.origin) == 1

    run(main)


@pytest.mark.parametrize("close", ["fin", "rst"])
def test_idle_connection_closed_under_a_request_is_retried_once(
    run: Callable[[Main], None], close: str
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(ok(b"first"))
        if n == 0:
            # The next request arrives as the server gives up on the idle connection.
            await reader.readuntil(b"\r\n\r\n")
            if close == "rst":
                reset(writer)
            return  # closed with FIN on the way out
        await serve_forever(reader, writer)

    async def main() -> None:
        async with raw_pool(handle) as (server, pool):
            assert (await post(pool, server.origin, "/")).body == b"first"
            assert (await post(pool, server.origin, "/")).body == b"first"
            assert server.connections == 2

    run(main)


@pytest.mark.parametrize("sent", [b"H", b"HTTP/1.1 200 OK\r\nContent-Le"])
def test_close_after_response_bytes_is_an_error_not_a_retry(
    run: Callable[[Main], None], sent: bytes
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(ok(b"first"))
        await read_request(reader)
        writer.write(sent)  # then FIN: unlike an RST it cannot overtake the bytes

    async def main() -> None:
        async with raw_pool(handle) as (server, pool):
            await post(pool, server.origin, "/")
            with pytest.raises(ConnectionLost) as lost:
                await post(pool, server.origin, "/")
            assert not isinstance(lost.value, StaleConnection)
            assert server.connections == 1

    run(main)


def test_fresh_connection_closed_without_answer_is_not_retried(
    run: Callable[[Main], None],
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)

    async def main() -> None:
        async with raw_pool(handle) as (server, pool):
            with pytest.raises(ConnectionLost):
                await post(pool, server.origin, "/")
            assert server.connections == 1

    run(main)


def test_mid_body_disconnect_raises_read_whole_and_streamed(run: Callable[[Main], None]) -> None:
    got_first = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
        if n == 1:
            await got_first.wait()

    async def main() -> None:
        got_first.clear()
        async with raw_pool(handle) as (server, pool):
            with pytest.raises(ConnectionLost):
                await post(pool, server.origin, "/")
            chunks = []
            async with pool.stream(server.origin, "POST", "/", (), b"", deadline=None) as stream:
                with pytest.raises(ConnectionLost):
                    async for chunk in stream:
                        chunks.append(chunk)
                        got_first.set()
            assert chunks == [b"0123456789"]
            assert pool.connections == 0

    run(main)


def test_close_delimited_and_interim_responses(run: Callable[[Main], None]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 0:
            writer.write(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nuntil the end")
            return
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok(b"final"))
        await serve_forever(reader, writer)

    async def main() -> None:
        async with raw_pool(handle) as (server, pool):
            response = await post(pool, server.origin, "/")
            assert (response.headers, response.body) == ({"x-a": "1"}, b"until the end")
            assert pool.idle(server.origin) == 0
            response = await post(pool, server.origin, "/")
            assert response.status == 200
            assert (response.headers, response.body) == ({"content-length": "5"}, b"final")
            assert pool.idle(server.origin) == 1

    run(main)


def test_peer_closing_an_idle_connection_drops_it(run: Callable[[Main], None]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(ok(b"bye"))  # keep-alive by its headers, closed right after

    async def main() -> None:
        async with raw_pool(handle) as (server, pool):
            assert (await post(pool, server.origin, "/")).body == b"bye"
            await eventually(lambda: (pool.connections, pool.idle(server.origin)) == (0, 0))
            assert (await post(pool, server.origin, "/")).body == b"bye"
            assert server.connections == 2

    run(main)


def test_idle_timeout_closes_unused_connections(run: Callable[[Main], None]) -> None:
    eofs: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(ok((await read_request(reader))[-1:]))
        assert await reader.read() == b""
        eofs.append(n)

    async def main() -> None:
        async with raw_pool(handle, idle_timeout_s=0.1) as (server, pool):
            await post(pool, server.origin, "/", b"x")
            assert pool.idle(server.origin) == 1
            await eventually(lambda: eofs == [0])
            assert (pool.connections, pool.idle(server.origin)) == (0, 0)

    run(main)


def test_close_closes_idle_and_busy_connections(run: Callable[[Main], None]) -> None:
    eofs: list[int] = []
    arrived = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        nonlocal arrived
        while True:
            try:
                body = (await read_request(reader)).rsplit(b"\r\n\r\n", 1)[1]
            except asyncio.IncompleteReadError as exc:
                assert exc.partial == b""
                eofs.append(n)
                return
            arrived += 1
            if body != b"hold":
                writer.write(ok(body))

    async def main() -> None:
        async with raw_server(handle) as server:
            pool = ConnectionPool()
            calls = [post(pool, server.origin, "/", b"%d" % i) for i in range(3)]
            assert [r.body for r in await asyncio.gather(*calls)] == [b"0", b"1", b"2"]
            assert pool.idle(server.origin) == 3
            busy = asyncio.create_task(post(pool, server.origin, "/", b"hold"))
            await eventually(lambda: arrived == 4)
            await pool.close()
            with pytest.raises(PoolClosed):
                await busy
            assert pool.connections == 0
            await eventually(lambda: sorted(eofs) == [0, 1, 2])  # "hold" reused one of them
            with pytest.raises(PoolClosed):
                await post(pool, server.origin, "/")

    run(main)


def test_back_pressure_bounds_buffered_bytes(run: Callable[[Main], None]) -> None:
    piece = bytes(range(256)) * 256  # 64 KiB
    count = 320  # 20 MiB

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(piece) * count))
        for _ in range(count):
            writer.write(piece)
            await writer.drain()
        await serve_forever(reader, writer)

    async def main() -> None:
        async with raw_pool(handle) as (server, pool):
            digest = hashlib.sha256()
            size = most = 0
            async with pool.stream(server.origin, "POST", "/", (), b"", deadline=None) as stream:
                async for chunk in stream:
                    digest.update(chunk)
                    size += len(chunk)
                    most = max(most, stream.buffered + len(chunk))
                    for _ in range(20):  # a slow consumer: the loop turns while we "work"
                        await asyncio.sleep(0)
            assert size == len(piece) * count
            assert digest.digest() == hashlib.sha256(piece * count).digest()
            assert HIGH_WATER < most <= HIGH_WATER + 256 * 1024
            assert pool.idle(server.origin) == 1  # read to the end, so reusable

    run(main)


def test_stream_deadline_covers_the_body(run: Callable[[Main], None]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        await reader.read()

    async def main() -> None:
        async with raw_pool(handle) as (server, pool):
            deadline = asyncio.get_running_loop().time() + 0.2
            async with pool.stream(
                server.origin, "POST", "/", (), b"", deadline=deadline
            ) as stream:
                assert await anext(stream) == b"ab"
                with pytest.raises(TimeoutError):
                    await anext(stream)
            await eventually(lambda: pool.connections == 0)

    run(main)


# --- chunked streams: one item per sent chunk ------------------------------------------------------

CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_stream_yields_whole_chunks_that_straddle_reads(run: Callable[[Main], None]) -> None:
    # The client has read each write before the next is made, so every cut below is a read
    # boundary: inside a chunk's data (twice in one chunk), inside a size line, after a CRLF.
    writes = [
        CHUNKED + b"c\r\nfirs",
        b"t-ch",
        b"unk!\r\n5\r",
        b"\nhel",
        b"lo\r\n3\r\nxyz\r\n0\r\n\r\n",
    ]
    first = b"first-chunk!"
    # After each write: the items yielded so far and the bytes of the chunk still partial.
    after: list[tuple[list[bytes], int]] = [
        ([], 4),
        ([], 8),
        ([first], 0),
        ([first], 3),
        ([first, b"hello", b"xyz"], 0),
    ]
    proceed: asyncio.Queue[None] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        for i, data in enumerate(writes):
            if i:
                await proceed.get()
            writer.write(data)
            await writer.drain()
        await serve_forever(reader, writer)

    async def main() -> None:
        nonlocal proceed
        proceed = asyncio.Queue()
        async with raw_pool(handle) as (server, pool):
            got: list[bytes] = []
            async with pool.stream(server.origin, "POST", "/", (), b"", deadline=None) as stream:

                async def consume() -> None:
                    async for piece in stream:
                        got.append(piece)

                consumer = asyncio.ensure_future(consume())
                for i, (items, partial) in enumerate(after):
                    if i:
                        proceed.put_nowait(None)
                    seen = sum(map(len, items)) + partial  # body bytes the client has read

                    def caught_up(seen: int = seen) -> bool:
                        return sum(map(len, got)) + stream.buffered == seen

                    await eventually(caught_up)
                    # A chunk the read completed may still be queued: the consumer's wake-up is
                    # ahead of ours once we yield, so after one turn it has taken everything.
                    await asyncio.sleep(0)
                    assert (got, stream.buffered) == (items, partial)
                await consumer
            assert got == [first, b"hello", b"xyz"]
            assert pool.idle(server.origin) == 1
            assert (await post(pool, server.origin, "/", b"again")).body == b"again"

    run(main)


def test_stream_yields_each_of_many_chunks_sent_in_one_write(run: Callable[[Main], None]) -> None:
    sent = [bytes([65 + i % 26]) * (i % 50 + 1) for i in range(3000)]  # 76 KiB in all
    # Extensions on every other size line are framing, never data.
    body = b"".join(
        b"%x%s\r\n%s\r\n" % (len(c), b";n=%d" % i if i % 2 else b"", c) for i, c in enumerate(sent)
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(CHUNKED + body + b"0\r\n\r\n")
        await serve_forever(reader, writer)

    async def main() -> None:
        async with raw_pool(handle) as (server, pool):
            got = []
            async with pool.stream(server.origin, "POST", "/", (), b"", deadline=None) as stream:
                async for piece in stream:
                    got.append(piece)
                    await asyncio.sleep(0)  # a consumer slower than the reads: pauses them
                assert stream.buffered == 0
            assert got == sent
            assert pool.idle(server.origin) == 1

    run(main)


@pytest.mark.parametrize("end", [b"0\r\n\r\n", b"0\r\nX-Checksum: 1\r\n\r\n"])
def test_stream_of_no_chunks_yields_nothing(end: bytes, run: Callable[[Main], None]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(CHUNKED + end)
        await serve_forever(reader, writer)

    async def main() -> None:
        async with raw_pool(handle) as (server, pool):
            async with pool.stream(server.origin, "POST", "/", (), b"", deadline=None) as stream:
                assert stream.status == 200
                assert [piece async for piece in stream] == []
            assert pool.idle(server.origin) == 1

    run(main)


def test_stream_yields_a_chunk_bigger_than_the_pause_threshold_whole(
    run: Callable[[Main], None],
) -> None:
    small = bytes(range(256)) * (HIGH_WATER // 256 + 1)  # completing it pauses reading
    big = bytes(range(251)) * 4200  # about 1 MiB, 16 times HIGH_WATER
    prefix = 48 * 1024  # of ``big``, read together with the end of ``small``
    tail = [big[i : i + 65536] for i in range(prefix, len(big), 65536)]
    proceed = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(CHUNKED + b"%x\r\n" % len(small) + small[:-1])
        await writer.drain()
        await proceed.wait()
        writer.write(small[-1:] + b"\r\n%x\r\n" % len(big) + big[:prefix])
        for data in tail:  # read only once the client resumes reading
            writer.write(data)
            await writer.drain()
        writer.write(b"\r\n0\r\n\r\n")
        await serve_forever(reader, writer)

    async def main() -> None:
        proceed.clear()
        async with raw_pool(handle) as (server, pool):
            got = []
            most = 0
            async with pool.stream(server.origin, "POST", "/", (), b"", deadline=None) as stream:
                await eventually(lambda: stream.buffered == len(small) - 1)
                proceed.set()
                # One read ends ``small``, over HIGH_WATER, so reading pauses with 48 KiB of
                # ``big`` already held: more than LOW_WATER, which taking ``small`` leaves.
                await eventually(lambda: stream.buffered == len(small) + prefix)
                async with asyncio.timeout(5):  # a reader left paused would hang here
                    async for piece in stream:
                        most = max(most, stream.buffered + len(piece))
                        got.append(piece)
            assert [len(piece) for piece in got] == [len(small), len(big)]
            assert got == [small, big]
            assert most <= len(big) + HIGH_WATER + 256 * 1024
            assert pool.idle(server.origin) == 1

    run(main)


def test_stream_splits_only_a_chunk_over_max_chunk(run: Callable[[Main], None]) -> None:
    huge = bytes(range(256)) * ((MAX_CHUNK + (1 << 20)) // 256)  # MAX_CHUNK + 1 MiB

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(CHUNKED + b"%x\r\n" % len(huge))
        writer.write(huge)
        writer.write(b"\r\n1\r\n!\r\n0\r\n\r\n")
        await serve_forever(reader, writer)

    async def main() -> None:
        async with raw_pool(handle) as (server, pool):
            async with pool.stream(server.origin, "POST", "/", (), b"", deadline=None) as stream:
                got = [piece async for piece in stream]
            assert len(got) == 3
            assert MAX_CHUNK <= len(got[0]) < MAX_CHUNK + 256 * 1024  # at most one read over
            assert got[0] + got[1] == huge
            assert got[2] == b"!"

    run(main)


def test_stream_yields_what_arrived_whole_before_the_connection_broke(
    run: Callable[[Main], None],
) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        # Two whole chunks and part of a third, then a close: what a container that fails
        # mid-stream sends (uvicorn closes the connection without the last chunk).
        writer.write(CHUNKED + b"5\r\ntok0 \r\n5\r\ntok1 \r\n5\r\ntok")

    async def main() -> None:
        async with raw_pool(handle) as (server, pool):
            got = []
            async with pool.stream(server.origin, "POST", "/", (), b"", deadline=None) as stream:
                await eventually(lambda: pool.connections == 0)  # the loss is known already
                with pytest.raises(ConnectionLost):
                    async for piece in stream:
                        got.append(piece)
            assert got == [b"tok0 ", b"tok1 "]  # the chunk cut short is not handed out

    run(main)


@pytest.mark.parametrize(
    ("coding", "chunked"),
    [("Chunked", True), ("gzip, chunked", True), ("chunked, gzip", False)],
)
def test_chunked_only_when_it_is_the_last_coding(
    coding: str, chunked: bool, run: Callable[[Main], None]
) -> None:
    # As llhttp frames it (RFC 9112 §6.3): then a close cuts a chunked body short, while
    # another body is close-delimited and ends there, the chunk framing being its data.
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: %s\r\n\r\n" % coding.encode())
        writer.write(b"3\r\nabc\r\n")

    async def main() -> None:
        async with raw_pool(handle) as (server, pool):
            got = []
            if chunked:
                with pytest.raises(ConnectionLost):
                    await post(pool, server.origin, "/")
                async with pool.stream(
                    server.origin, "POST", "/", (), b"", deadline=None
                ) as stream:
                    with pytest.raises(ConnectionLost):
                        async for piece in stream:
                            got.append(piece)
                assert got == [b"abc"]
            else:
                assert (await post(pool, server.origin, "/")).body == b"3\r\nabc\r\n"
                async with pool.stream(
                    server.origin, "POST", "/", (), b"", deadline=None
                ) as stream:
                    got = [piece async for piece in stream]
                assert b"".join(got) == b"3\r\nabc\r\n"
            await eventually(lambda: pool.connections == 0)  # never pooled: each ended by a close

    run(main)


# --- streamed request bodies ----------------------------------------------------------------------


class Pieces:
    """An async iterable of seeded random pieces of the given sizes; counts the pieces taken."""

    def __init__(self, sizes: list[int], seed: int = 7) -> None:
        rng = random.Random(seed)
        self.pieces = [rng.randbytes(size) for size in sizes]
        self.data = b"".join(self.pieces)
        self.pulled = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            self.pulled += 1
            yield piece


class Repeated:
    """``count`` copies of ``piece``, without holding them: for bodies of many MiB."""

    def __init__(self, piece: bytes, count: int) -> None:
        self.piece = piece
        self.count = count
        self.pulled = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.pulled += 1
            yield self.piece

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for _ in range(self.count):
            digest.update(self.piece)
        return digest.hexdigest()


async def settled(value: Callable[[], int], quiet_s: float = 0.3, timeout_s: float = 5.0) -> int:
    """``value()`` once it has stopped changing for ``quiet_s``: progress that has stalled."""
    deadline = time.monotonic() + timeout_s
    last, since = value(), time.monotonic()
    while time.monotonic() - since < quiet_s:
        assert time.monotonic() < deadline, "still changing"
        await asyncio.sleep(0.01)
        if value() != last:
            last, since = value(), time.monotonic()
    return last


ODD_SIZES = [1 << 20, 1, 4093, 0, 65537, 3]  # the empty piece is skipped, never sent


def received(response: Any) -> dict[str, str]:
    return dict(json.loads(response.headers["x-received"]))


@pytest.mark.parametrize("known", [True, False], ids=["content-length", "chunked"])
def test_streamed_body_arrives_exactly(
    uvicorn_server: Uvicorn, run: Callable[[Main], None], known: bool
) -> None:
    origin = uvicorn_server.origin

    async def main() -> None:
        async with open_pool() as pool:
            source = Pieces(ODD_SIZES)
            length = len(source.data) if known else None
            response = await post(pool, origin, "/echo", source, body_length=length)
            assert response.status == 200
            assert response.body == source.data
            framing = {k: v for k, v in received(response).items() if k != "host"}
            assert framing == (
                {"content-length": str(len(source.data))}
                if known
                else {"transfer-encoding": "chunked"}
            )
            source = Pieces(ODD_SIZES, seed=8)
            async with pool.stream(
                origin, "POST", "/echo", (), source, body_length=length, deadline=None
            ) as stream:
                assert stream.status == 200
                assert b"".join([chunk async for chunk in stream]) == source.data
            for empty in (Pieces([]), Pieces([0, 0])):  # nothing at all, and only empty pieces
                response = await post(
                    pool, origin, "/echo", empty, body_length=0 if known else None
                )
                assert (response.status, response.body) == (200, b"")

    run(main)


def test_streamed_body_bytes_on_the_wire(run: Callable[[Main], None]) -> None:
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"Transfer-Encoding" in head:
            seen.append(head + await reader.readuntil(b"0\r\n\r\n"))
        else:
            seen.append(head + await reader.readexactly(9))
        writer.write(ok(b"done"))
        await serve_forever(reader, writer)

    async def main() -> None:
        async with raw_pool(handle) as (server, pool):
            headers = [("Content-Type", "text/csv")]
            for length in (None, 9):
                source = Pieces([2, 0, 7])
                response = await post(
                    pool, server.origin, "/invocations", source, headers=headers, body_length=length
                )
                assert response.body == b"done"
            a, _, b = Pieces([2, 0, 7]).pieces
            host = b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: text/csv\r\n"
            assert seen == [
                host % server.origin.port
                + b"Transfer-Encoding: chunked\r\n\r\n2\r\n%s\r\n7\r\n%s\r\n0\r\n\r\n" % (a, b),
                host % server.origin.port + b"Content-Length: 9\r\n\r\n" + a + b,
            ]

    run(main)


def test_streamed_body_takes_a_fresh_connection_then_pools_it(
    uvicorn_server: Uvicorn, run: Callable[[Main], None]
) -> None:
    # An idle connection might be one the server is closing, and a streamed body cannot be
    # sent a second time on another: so it never takes one, and adds its own to the pool.
    origin = uvicorn_server.origin

    async def main() -> None:
        uvicorn_server.app.clients.clear()
        async with open_pool() as pool:
            assert (await post(pool, origin, "/echo", b"first")).body == b"first"
            source = Pieces([5, 6])
            assert (await post(pool, origin, "/echo", source, body_length=11)).body == source.data
            assert (pool.connections, pool.idle(origin)) == (2, 2)
            assert (await post(pool, origin, "/echo", b"third")).body == b"third"
            assert uvicorn_server.app.clients[2] == uvicorn_server.app.clients[1]  # LIFO reuse
            assert len(uvicorn_server.ports()) == 2

    run(main)


@pytest.mark.parametrize(("sizes", "more"), [([65536, 65536], True), ([65536], False)])
def test_streamed_body_longer_or_shorter_than_declared_fails_and_closes(
    uvicorn_server: Uvicorn, run: Callable[[Main], None], sizes: list[int], more: bool
) -> None:
    origin = uvicorn_server.origin

    async def main() -> None:
        uvicorn_server.app.clients.clear()
        async with open_pool() as pool:
            with pytest.raises(BodyLengthMismatch) as mismatch:
                await post(pool, origin, "/echo", Pieces(sizes), body_length=100_000)
            assert (mismatch.value.declared, mismatch.value.sent) == (100_000, sum(sizes))
            assert str(mismatch.value) == (
                "The request body yielded more than 100000 bytes, its declared length."
                if more
                else "The request body yielded 65536 of 100000 bytes, its declared length."
            )
            assert pool.idle(origin) == 0
            await eventually(lambda: pool.connections == 0)
            with pytest.raises(BodyLengthMismatch):
                async with pool.stream(
                    origin, "POST", "/echo", (), Pieces(sizes), body_length=100_000, deadline=None
                ):
                    raise AssertionError("no response is handed out")
            await eventually(lambda: pool.connections == 0)
            assert (await post(pool, origin, "/echo", b"after")).body == b"after"
            assert len(uvicorn_server.ports()) == 3  # neither cut-short request's connection reused

    run(main)


def test_streamed_body_is_paced_by_a_slow_reader(
    uvicorn_server: Uvicorn, run: Callable[[Main], None]
) -> None:
    app = uvicorn_server.app
    piece = bytes(range(256)) * 256  # 64 KiB
    source_size = 64 << 20

    async def main() -> None:
        app.hold_at = 1 << 20
        app.held.clear()
        app.release.clear()
        async with open_pool() as pool:
            source = Repeated(piece, source_size // len(piece))
            call = asyncio.ensure_future(
                post(pool, uvicorn_server.origin, "/hold", source, body_length=source_size)
            )
            try:
                await eventually(app.held.is_set)
                pulled = await settled(lambda: source.pulled)
                # What the client took from the source and the server has not read: the kernel's
                # socket buffers (about 4.5 MiB here), the transport's high-water mark and one
                # piece. Without back-pressure the client would have taken all 64 MiB by now.
                unsent = pulled * len(piece) - app.consumed
                assert unsent < 16 << 20, unsent
            finally:
                app.release.set()
            response = await call
            assert json.loads(response.body) == {"length": source_size, "sha256": source.sha256()}

    run(main)


def test_early_answer_stops_the_upload(
    uvicorn_server: Uvicorn, run: Callable[[Main], None]
) -> None:
    # uvicorn reads (and drops) the rest of the body once it has answered, and shares this
    # process's GIL with the client, so how far the upload gets before the answer is seen
    # varies (tens of MiB); the raw server below pins down that it stops.
    origin = uvicorn_server.origin
    piece = bytes(range(256)) * 256  # 64 KiB
    count = 4096  # 256 MiB

    async def main() -> None:
        uvicorn_server.app.clients.clear()
        async with open_pool() as pool:
            source = Repeated(piece, count)
            response = await post(pool, origin, "/reject", source, body_length=len(piece) * count)
            assert (response.status, response.body) == (413, b"too large")
            assert source.pulled < count  # stopped, not sent to the end
            assert pool.idle(origin) == 0  # its request cut short: never reused
            await eventually(lambda: pool.connections == 0)
            source = Repeated(piece, count)
            async with pool.stream(
                origin, "POST", "/reject", (), source, body_length=None, deadline=None
            ) as stream:
                assert stream.status == 413
                assert [chunk async for chunk in stream] == [b"too large"]
            assert source.pulled < count
            assert pool.idle(origin) == 0
            await eventually(lambda: pool.connections == 0)
            assert (await post(pool, origin, "/echo", b"after")).body == b"after"
            assert len(uvicorn_server.ports()) == 3

    run(main)


def test_early_answer_from_a_server_that_stops_reading(run: Callable[[Main], None]) -> None:
    piece = bytes(range(256)) * 256  # 64 KiB
    count = 1024  # 64 MiB
    answered = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.readexactly(1 << 20)
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large")
        answered.set()
        await reader.read(0)  # then reads nothing more, and keeps the connection open
        await asyncio.Event().wait()

    async def main() -> None:
        answered.clear()
        async with raw_pool(handle) as (server, pool):
            source = Repeated(piece, count)
            response = await post(pool, server.origin, "/", source, body_length=len(piece) * count)
            assert (response.status, response.body) == (413, b"too large")
            # Past the MiB read: no more than the socket buffers held when the answer came.
            assert source.pulled * len(piece) < (1 << 20) + (12 << 20)
            pulled = source.pulled
            assert pool.idle(server.origin) == 0
            await eventually(lambda: pool.connections == 0)
            assert source.pulled == pulled

    run(main)


@pytest.mark.parametrize("stall", ["server", "source"])
def test_deadline_covers_the_upload(run: Callable[[Main], None], stall: str) -> None:
    release = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read() if stall == "source" else await release.wait()

    async def stalling() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        await release.wait()
        yield b"never"

    async def main() -> None:
        release.clear()
        async with raw_pool(handle) as (server, pool):
            body = Repeated(b"x" * 65536, 1024) if stall == "server" else stalling()
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await post(pool, server.origin, "/", body, timeout_s=0.3)
            # uvloop reads its clock once per loop pass, so the deadline may fire a few ms
            # before 0.3 s by time.monotonic().
            assert 0.28 <= time.monotonic() - started < 1.5
            await eventually(lambda: pool.connections == 0)
            release.set()

    run(main)


def test_source_error_propagates_and_closes(
    uvicorn_server: Uvicorn, run: Callable[[Main], None]
) -> None:
    class SourceBroke(Exception):
        pass

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        raise SourceBroke("disk gone")

    async def main() -> None:
        async with open_pool() as pool:
            with pytest.raises(SourceBroke):
                await post(pool, uvicorn_server.origin, "/echo", broken(), body_length=2000)
            await eventually(lambda: pool.connections == 0)

    run(main)


def test_cancelled_upload_closes_its_connection(
    uvicorn_server: Uvicorn, run: Callable[[Main], None]
) -> None:
    origin = uvicorn_server.origin
    app = uvicorn_server.app

    async def main() -> None:
        app.hold_at = 1 << 20
        app.held.clear()
        app.release.clear()
        async with open_pool() as pool:
            source = Repeated(b"x" * 65536, 1024)
            call = asyncio.ensure_future(post(pool, origin, "/hold", source, body_length=64 << 20))
            try:
                await eventually(app.held.is_set)
                call.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await call
                await eventually(lambda: pool.connections == 0)
            finally:
                app.release.set()

    run(main)


# --- through ContainerClient ---------------------------------------------------------------------


def test_client_maps_mid_body_loss_to_unreachable(run: Callable[[Main], None]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")

    async def main() -> None:
        async with raw_server(handle) as server:
            client = ContainerClient()
            url = f"http://127.0.0.1:{server.origin.port}"
            call = ContainerRequest(body=b"x", headers=[], timeout_s=5.0)
            with pytest.raises(ContainerUnreachable) as failed:
                await client.invoke(url, call)
            assert failed.value.message == (
                "The connection to the container failed: "
                "The server closed the connection mid-response."
            )
            async with client.stream(url, call) as stream:
                assert stream.status == 200
                with pytest.raises(ContainerUnreachable):
                    _ = [chunk async for chunk in stream.chunks]
            assert not await client.ping(url, 1.0)
            await client.close()

    run(main)


def test_client_streams_a_request_body(
    uvicorn_server: Uvicorn, run: Callable[[Main], None]
) -> None:
    async def slow() -> AsyncIterator[bytes]:
        yield b"x"
        await asyncio.sleep(10)
        yield b"y"

    async def main() -> None:
        client = ContainerClient()
        url = f"http://127.0.0.1:{uvicorn_server.origin.port}"
        source = Pieces(ODD_SIZES)
        call = ContainerRequest(
            body=source, headers=[], timeout_s=5.0, path="/echo", body_length=len(source.data)
        )
        reply = await client.invoke(url, call)
        assert (reply.status, reply.body) == (200, source.data)
        source = Pieces(ODD_SIZES, seed=9)
        call = ContainerRequest(body=source, headers=[], timeout_s=5.0, path="/echo")
        async with client.stream(url, call) as stream:
            assert b"".join([chunk async for chunk in stream.chunks]) == source.data
        call = ContainerRequest(body=slow(), headers=[], timeout_s=0.2, path="/echo")
        with pytest.raises(ContainerTimeout) as timeout:
            await client.invoke(url, call)
        assert timeout.value.message == "The container did not answer within 0.2 seconds."
        await client.close()

    run(main)
