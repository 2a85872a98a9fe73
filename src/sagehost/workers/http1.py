"""A small HTTP/1.1 client for calls to containers: a keep-alive pool, parsing by ``httptools``.

Why not a general client: on this path (gateway to container, on loopback) aiohttp spent
250-400 µs of CPU per call; this spends a fraction of that. It does only what sagehost needs:
one request at a time per connection (no pipelining), request bodies sent whole with
``Content-Length`` or streamed from an async iterable with back-pressure, responses read whole
under a size cap or streamed with back-pressure.
Response framing (Content-Length, chunked, close-delimited) is left to llhttp via httptools.
A streamed chunked body is delivered one sender's chunk at a time, however the socket reads
cut it: each container chunk must become exactly one event (runtime-api.md §4.3, §8.2).

A streamed request body goes out on a fresh connection, never an idle one: it can be sent only
once, and a reused connection the server has just closed would need the one retry that a bytes
body gets (``StaleConnection``). A fresh connection costs a connect, nothing next to a body
worth streaming. Chunks are written one at a time, the next pulled only while the transport is
below its high-water mark (``pause_writing``/``resume_writing``), so the client holds at most
that mark plus one chunk. A final response that arrives before the body is all sent (a
container refusing it early, say with 413) stops the upload; the response is read as usual and
the connection, its request cut short, is closed afterwards.

Errors: ``OSError`` subclasses when the call failed on the wire (``ConnectionLost``,
``InvalidResponse``, ``PoolClosed``, and the OS's own connect errors); ``TimeoutError`` when
the deadline passed; ``BodyTooLarge`` over the size cap; ``ValueError`` for a request that
would be malformed on the wire (header injection, ``BodyLengthMismatch``). Whatever a streamed
body's iterable raises propagates unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from sagehost.workers.http1_connection import (
    HIGH_WATER,
    LOW_WATER,
    MAX_CHUNK,
    Body,
    BodyLengthMismatch,
    BodyTooLarge,
    Connection,
    ConnectionLost,
    InvalidResponse,
    NotConnected,
    PoolClosed,
    StaleConnection,
)

__all__ = [
    "HIGH_WATER",
    "LOW_WATER",
    "MAX_CHUNK",
    "Body",
    "BodyLengthMismatch",
    "BodyTooLarge",
    "ConnectionLost",
    "ConnectionPool",
    "InvalidResponse",
    "NotConnected",
    "Origin",
    "PoolClosed",
    "Response",
    "StaleConnection",
    "StreamResponse",
    "encode_head",
]

#: How often deadlines are checked; a call may overrun its deadline by up to this much.
DEADLINE_TICK_S = 0.05
IDLE_TIMEOUT_S = 4.0  # below uvicorn's 5 s keep-alive, so we drop an idle connection first
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"/[\x21-\x7e]*")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class Origin:
    """Where to connect; parse a URL once and reuse the result."""

    __slots__ = ("authority", "host", "key", "port", "tls")

    def __init__(
        self, host: str, port: int, *, tls: bool = False, authority: str | None = None
    ) -> None:
        """``authority`` is sent as ``Host`` in place of ``host:port`` (a relayed request
        keeps the Host its sender signed); connections are still pooled by host and port."""
        self.host = host
        self.port = port
        self.tls = tls
        if authority is None:
            name = f"[{host}]" if ":" in host else host
            authority = name if port == (443 if tls else 80) else f"{name}:{port}"
        self.authority = authority
        self.key = (host, port, tls)

    @classmethod
    def from_url(cls, url: str) -> tuple[Origin, str]:
        """``(origin, path prefix)`` of an ``http://`` or ``https://`` URL."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        origin = cls(parts.hostname, parts.port or (443 if tls else 80), tls=tls)
        return origin, parts.path.rstrip("/")


def encode_head(
    method: str,
    target: str,
    authority: str,
    headers: Iterable[tuple[str, str]],
    content_length: int | None,
    *,
    chunked: bool = False,
) -> bytes:
    """Request line and header block, ``Host`` first and ``Content-Length`` (or, ``chunked``,
    ``Transfer-Encoding: chunked``) last.

    Raises ``ValueError`` for anything that would let a value escape its line, and for HEAD,
    whose response the parser would wait on for a body that never comes.
    """
    if method == "HEAD":
        raise ValueError("HEAD requests are not supported.")
    if not _TARGET.fullmatch(target):
        raise ValueError(f"Invalid request target: {target!r}")
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {authority}\r\n"]
    for name, value in headers:
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"Invalid header name: {name!r}")
        if _BAD_VALUE.search(value):
            raise ValueError(f"Invalid value for header {name}: {value!r}")
        if name.lower() in _FRAMING:
            raise ValueError(f"Header {name} is set by the client itself.")
        lines.append(f"{name}: {value}\r\n")
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}\r\n")
    elif chunked:
        lines.append("Transfer-Encoding: chunked\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("latin-1")


class Response:
    """A response read whole. ``headers`` has lower-case names, repeats joined with ", "."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class StreamResponse:
    """A response whose body is iterated piece by piece.

    A chunked body yields each chunk the sender framed, whole and in order, however the socket
    reads cut it; a chunk over ``MAX_CHUNK`` is the one exception, yielded in pieces. An empty
    chunk list yields nothing. Any other body (Content-Length, close-delimited) yields what each
    socket read brings. If the exchange fails, what had arrived is yielded before the error
    (a chunk cut short is not). Valid only inside the ``ConnectionPool.stream`` block that
    produced it.
    """

    __slots__ = ("_conn", "headers", "status")

    def __init__(self, conn: Connection) -> None:
        self.status = conn.status
        self.headers = conn.headers
        self._conn = conn

    @property
    def buffered(self) -> int:
        """Body bytes received and not yet consumed (bounded by back-pressure)."""
        return self._conn.buffered

    def __aiter__(self) -> StreamResponse:
        return self

    async def __anext__(self) -> bytes:
        conn = self._conn
        while True:
            # What arrived whole before a failure is handed out first: the failure (a lost
            # connection, often in the same read) follows the data, as on the wire.
            chunks = conn.chunks
            if chunks:
                data = chunks.popleft()
                conn.buffered -= len(data)
                # Resume when nothing is left to hand out, whatever the count: the rest of
                # ``buffered`` is then a partial chunk that only more reading can complete.
                if conn.paused and (conn.buffered <= LOW_WATER or not chunks):
                    conn.paused = False
                    conn.transport.resume_reading()
                return data
            if conn.error is not None:
                raise conn.error
            if conn.done:
                raise StopAsyncIteration
            conn.waiter = conn.loop.create_future()
            await conn.waiter


class ConnectionPool:
    """Idle keep-alive connections per origin, reused last-in first-out.

    There is no limit on connections: the callers' concurrency is bounded upstream.
    """

    __slots__ = (
        "_all",
        "_closed",
        "_drained",
        "_due",
        "_idle",
        "_idle_timeout",
        "_ssl",
        "_sweeper",
        "_watcher",
    )

    def __init__(self, *, idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self._idle: dict[tuple[str, int, bool], list[Connection]] = {}
        self._all: set[Connection] = set()
        self._idle_timeout = idle_timeout_s
        self._ssl: ssl.SSLContext | None = None
        self._closed = False
        self._sweeper: asyncio.TimerHandle | None = None
        self._drained: asyncio.Future[None] | None = None
        # Connections with a deadline. One coarse periodic check replaces a timer per request:
        # arming and cancelling a timer for every call cost more than the rest of the call's
        # bookkeeping, and invocation deadlines are seconds long, so DEADLINE_TICK_S of slack
        # is immaterial.
        self._due: set[Connection] = set()
        self._watcher: asyncio.TimerHandle | None = None

    @property
    def connections(self) -> int:
        """Open connections, idle or busy."""
        return len(self._all)

    def idle(self, origin: Origin) -> int:
        return len(self._idle.get(origin.key, ()))

    async def request(
        self,
        origin: Origin,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]] = (),
        body: Body = b"",
        *,
        body_length: int | None = None,
        timeout_s: float | None,
        max_body: int,
    ) -> Response:
        """Send one request and read the whole response; ``timeout_s`` bounds all of it.

        ``body_length`` is a streamed body's size, if known (else it is sent chunked).
        """
        deadline = None if timeout_s is None else asyncio.get_running_loop().time() + timeout_s
        conn = await self._send(
            origin, method, target, headers, body, body_length, deadline, max_body
        )
        parts = conn.chunks
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        response = Response(conn.status, conn.headers, data)
        conn.finish()
        return response

    @asynccontextmanager
    async def stream(
        self,
        origin: Origin,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]] = (),
        body: Body = b"",
        *,
        body_length: int | None = None,
        deadline: float | None,
    ) -> AsyncIterator[StreamResponse]:
        """Send one request; yield once the head is in. ``deadline`` (loop time) bounds it all.

        Leaving early closes the connection; it is reused only when the body was read to its end.
        ``body_length`` is as in ``request``.
        """
        conn = await self._send(origin, method, target, headers, body, body_length, deadline, None)
        try:
            yield StreamResponse(conn)
        finally:
            conn.finish()

    async def _send(
        self,
        origin: Origin,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: Body,
        body_length: int | None,
        deadline: float | None,
        max_body: int | None,
    ) -> Connection:
        """Send the request (whole, or streamed from an iterable) on a pooled connection and
        return it once the response head is in; ``max_body`` None reads the body as a stream."""
        if isinstance(body, (bytes, bytearray)):
            length = len(body) if body or method != "GET" else None
            head = encode_head(method, target, origin.authority, headers, length)
            return await self._exchange(origin, head, body, deadline, max_body)
        head = encode_head(method, target, origin.authority, headers, body_length, chunked=True)
        return await self._upload(origin, head, body, body_length, deadline, max_body)

    async def close(self) -> None:
        """Close every connection, idle or busy; busy calls fail with ``PoolClosed``."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        for conns in self._idle.values():
            for conn in conns:
                conn.pooled = False
        self._idle.clear()
        for conn in list(self._all):
            conn.fail(PoolClosed("The connection pool was closed."))
        if self._all:
            self._drained = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self._drained

    # --- internals -------------------------------------------------------------------------------

    async def _exchange(
        self,
        origin: Origin,
        head: bytes,
        body: bytes | bytearray,
        deadline: float | None,
        limit: int | None,
    ) -> Connection:
        if self._closed:
            raise PoolClosed("The connection pool was closed.")
        conn = self._checkout(origin.key)
        if conn is not None:
            try:
                await conn.exchange(head, body, deadline, limit)
            except StaleConnection:
                pass  # closed under us while idle; a fresh connection is the one retry
            else:
                return conn
            try:
                conn = await self._connect(origin, deadline)
            except ConnectionRefusedError as exc:
                # The first attempt may have reached a container that then died: not "never sent".
                raise ConnectionLost(f"The container went away: {exc}") from exc
        else:
            try:
                conn = await self._connect(origin, deadline)
            except ConnectionRefusedError as exc:
                raise NotConnected(str(exc)) from exc
        await conn.exchange(head, body, deadline, limit)
        return conn

    async def _upload(
        self,
        origin: Origin,
        head: bytes,
        body: AsyncIterable[bytes],
        length: int | None,
        deadline: float | None,
        limit: int | None,
    ) -> Connection:
        """``_exchange`` for a streamed body: on a fresh connection, so never retried."""
        if self._closed:
            raise PoolClosed("The connection pool was closed.")
        try:
            conn = await self._connect(origin, deadline)
        except ConnectionRefusedError as exc:
            raise NotConnected(str(exc)) from exc
        await conn.exchange(head, body, deadline, limit, length)
        return conn

    async def _connect(self, origin: Origin, deadline: float | None) -> Connection:
        loop = asyncio.get_running_loop()
        context = None
        if origin.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        async with asyncio.timeout_at(deadline):
            _, conn = await loop.create_connection(
                lambda: Connection(self, origin.key, loop),
                origin.host,
                origin.port,
                ssl=context,
                server_hostname=origin.host if context is not None else None,
            )
        if self._closed:
            conn.fail(PoolClosed("The connection pool was closed."))
            raise PoolClosed("The connection pool was closed.")
        return conn

    def _checkout(self, key: tuple[str, int, bool]) -> Connection | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            conn.pooled = False
            if conn.loop.time() - conn.idle_since < self._idle_timeout:
                if not conn.transport.is_closing():
                    return conn
                continue  # closing: connection_lost is on its way
            conn.close()  # the newest is too old, so all beneath it are too
            for old in conns:
                old.pooled = False
                old.close()
            conns.clear()
        return None

    def checkin(self, conn: Connection) -> None:
        if self._closed:
            conn.close()
            return
        conn.idle_since = conn.loop.time()
        conn.pooled = True
        conns = self._idle.get(conn.key)
        if conns is None:
            conns = self._idle[conn.key] = []
        conns.append(conn)
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(self._idle_timeout / 4, self._sweep, conn.loop)

    def discard(self, conn: Connection) -> None:
        """``conn`` is gone: forget it (an idle one is no longer offered)."""
        self._all.discard(conn)
        self._due.discard(conn)
        if conn.pooled:
            conn.pooled = False
            self._idle[conn.key].remove(conn)
        if self._drained is not None and not self._all and not self._drained.done():
            self._drained.set_result(None)

    def watch(self, conn: Connection) -> None:
        self._due.add(conn)
        if self._watcher is None:
            self._watcher = conn.loop.call_later(DEADLINE_TICK_S, self._check_deadlines, conn.loop)

    def unwatch(self, conn: Connection) -> None:
        self._due.discard(conn)

    def _check_deadlines(self, loop: asyncio.AbstractEventLoop) -> None:
        self._watcher = None
        now = loop.time()
        for conn in [c for c in self._due if c.deadline <= now]:
            self._due.discard(conn)
            conn.expire()
        if self._due:
            self._watcher = loop.call_later(DEADLINE_TICK_S, self._check_deadlines, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close connections idle too long; each list is ordered oldest first."""
        self._sweeper = None
        cutoff = loop.time() - self._idle_timeout
        for key, conns in list(self._idle.items()):
            expired = 0
            while expired < len(conns) and conns[expired].idle_since <= cutoff:
                expired += 1
            for conn in conns[:expired]:
                conn.pooled = False
                conn.close()
            del conns[:expired]
            if not conns:
                del self._idle[key]
        if self._idle:
            self._sweeper = loop.call_later(self._idle_timeout / 4, self._sweep, loop)
