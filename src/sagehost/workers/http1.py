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
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

#: How often deadlines are checked; a call may overrun its deadline by up to this much.
DEADLINE_TICK_S = 0.05
IDLE_TIMEOUT_S = 4.0  # below uvicorn's 5 s keep-alive, so we drop an idle connection first
HIGH_WATER = 64 * 1024  # unconsumed stream bytes at which reading from the socket pauses
LOW_WATER = 16 * 1024  # ... and resumes
#: A streamed chunk bigger than this is delivered in pieces of at least this size. botocore
#: rejects an event payload over 24 MiB, so such a chunk could not travel whole anyway, and
#: this bounds what one stream holds: HIGH_WATER + MAX_CHUNK + one socket read.
MAX_CHUNK = 16 * 1024 * 1024
_INLINE_BODY = 16 * 1024  # smaller bodies are copied into the head: one buffer, one send
#: A streamed body lets the loop run at least once per this many bytes written. A source that
#: never suspends, into a socket that never fills, would otherwise hold the loop for the whole
#: upload: nothing else would run, and an early answer would go unseen until the end.
_YIELD_EVERY = 256 * 1024

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"/[\x21-\x7e]*")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection"})

#: A request body: whole, or streamed from an async iterable.
Body = bytes | bytearray | AsyncIterable[bytes]


class ConnectionLost(ConnectionError):
    """The server closed or reset the connection before the response was complete."""


class StaleConnection(ConnectionLost):
    """A reused idle connection ended before any response byte: the server closed it while idle,
    so the request was not processed and may be sent again on a fresh connection."""


class NotConnected(ConnectionError):
    """No connection could be opened and nothing was sent: the call may go elsewhere."""


class InvalidResponse(ConnectionError):
    """The server's bytes are not a valid HTTP/1.1 response."""


class PoolClosed(ConnectionError):
    """The pool was closed before or during the call."""


class BodyTooLarge(Exception):
    """The response body is larger than ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The response body is larger than {limit} bytes.")
        self.limit = limit


class BodyLengthMismatch(ValueError):
    """A streamed request body's iterable yielded more or fewer bytes than its declared length.

    The request was cut short on the wire and its connection closed.
    """

    def __init__(self, declared: int, sent: int, *, more: bool) -> None:
        what = f"more than {declared}" if more else f"{sent} of {declared}"
        super().__init__(f"The request body yielded {what} bytes, its declared length.")
        self.declared = declared
        self.sent = sent


class _Surplus(Exception):
    """Raised inside the parser to stop it at bytes beyond the one response we asked for."""


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

    def __init__(self, conn: _Connection) -> None:
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
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._all: set[_Connection] = set()
        self._idle_timeout = idle_timeout_s
        self._ssl: ssl.SSLContext | None = None
        self._closed = False
        self._sweeper: asyncio.TimerHandle | None = None
        self._drained: asyncio.Future[None] | None = None
        # Connections with a deadline. One coarse periodic check replaces a timer per request:
        # arming and cancelling a timer for every call cost more than the rest of the call's
        # bookkeeping, and invocation deadlines are seconds long, so DEADLINE_TICK_S of slack
        # is immaterial.
        self._due: set[_Connection] = set()
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
    ) -> _Connection:
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
    ) -> _Connection:
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
    ) -> _Connection:
        """``_exchange`` for a streamed body: on a fresh connection, so never retried."""
        if self._closed:
            raise PoolClosed("The connection pool was closed.")
        try:
            conn = await self._connect(origin, deadline)
        except ConnectionRefusedError as exc:
            raise NotConnected(str(exc)) from exc
        await conn.exchange(head, body, deadline, limit, length)
        return conn

    async def _connect(self, origin: Origin, deadline: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        context = None
        if origin.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        async with asyncio.timeout_at(deadline):
            _, conn = await loop.create_connection(
                lambda: _Connection(self, origin.key, loop),
                origin.host,
                origin.port,
                ssl=context,
                server_hostname=origin.host if context is not None else None,
            )
        if self._closed:
            conn.fail(PoolClosed("The connection pool was closed."))
            raise PoolClosed("The connection pool was closed.")
        return conn

    def _checkout(self, key: tuple[str, int, bool]) -> _Connection | None:
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

    def checkin(self, conn: _Connection) -> None:
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

    def discard(self, conn: _Connection) -> None:
        """``conn`` is gone: forget it (an idle one is no longer offered)."""
        self._all.discard(conn)
        self._due.discard(conn)
        if conn.pooled:
            conn.pooled = False
            self._idle[conn.key].remove(conn)
        if self._drained is not None and not self._all and not self._drained.done():
            self._drained.set_result(None)

    def watch(self, conn: _Connection) -> None:
        self._due.add(conn)
        if self._watcher is None:
            self._watcher = conn.loop.call_later(DEADLINE_TICK_S, self._check_deadlines, conn.loop)

    def unwatch(self, conn: _Connection) -> None:
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


class _Connection(asyncio.Protocol):
    """One TCP connection and the state of the exchange on it.

    The response fields are reset per exchange; ``chunks`` holds the body parts (whole mode)
    or the unconsumed chunks (stream mode). A streamed chunked body gathers each chunk in
    ``_part`` (``b""`` between chunks, ``None`` for any other body or mode) and, only when it
    spans reads, in ``_pieces``, until llhttp reports the chunk complete; only the stream
    mode's parser reports that, so a whole-body read pays no call per chunk. ``buffered``
    counts those bytes too. Reading pauses only when ``chunks`` has something for the
    consumer, who resumes it on taking the last one, so a partial chunk never stalls the
    stream (one chunk may take ``buffered`` past ``HIGH_WATER``, up to ``MAX_CHUNK``).
    Only the parser callbacks, ``fail`` and ``connection_lost`` complete an exchange; the
    caller's task only waits, or (a streamed request body) writes the body, then waits.
    ``_unsent`` marks a request whose body was not all written, which leaves the connection
    out of step for good.
    """

    __slots__ = (
        "_active",
        "_drain",
        "_gathered",
        "_keep_alive",
        "_limit",
        "_parser",
        "_part",
        "_pieces",
        "_pool",
        "_served",
        "_started",
        "_stream_parser",
        "_unsent",
        "_whole_parser",
        "_write_paused",
        "buffered",
        "chunks",
        "deadline",
        "done",
        "error",
        "headers",
        "idle_since",
        "key",
        "loop",
        "paused",
        "pooled",
        "status",
        "transport",
        "waiter",
    )

    transport: asyncio.Transport

    def __init__(
        self, pool: ConnectionPool, key: tuple[str, int, bool], loop: asyncio.AbstractEventLoop
    ) -> None:
        self.key = key
        self.loop = loop
        self.pooled = False
        self.idle_since = 0.0
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self.done = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self._pool = pool
        self._whole_parser: Any = httptools.HttpResponseParser(self)
        self._stream_parser: Any = None  # made on the first stream: see ``_ChunkCallbacks``
        self._parser: Any = self._whole_parser
        self._served = 0
        self._active = False
        self._started = False
        self._keep_alive = False
        self._limit: int | None = None
        self._part: bytes | None = None
        self._pieces: list[bytes] = []
        self._gathered = 0
        self.deadline = 0.0
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._unsent = False

    # --- driven by the pool ----------------------------------------------------------------------

    async def exchange(
        self,
        head: bytes,
        body: Body,
        deadline: float | None,
        limit: int | None,
        length: int | None = None,
    ) -> None:
        """Send the request; return when the whole response (``limit`` set) or its head is in.

        ``length`` is a streamed body's declared size (``None``: the head says chunked).
        """
        self.status = 0
        self.chunks.clear()
        self.buffered = 0
        self.done = False
        self._active = True
        self._started = False
        self._limit = limit
        # Both parsers rest between messages: this is only reached when the last one completed.
        if limit is not None:
            self._parser = self._whole_parser
        else:
            if self._stream_parser is None:
                self._stream_parser = httptools.HttpResponseParser(_ChunkCallbacks(self))
            self._parser = self._stream_parser
        waiter = self.waiter = self.loop.create_future()
        if deadline is not None:
            self.deadline = deadline
            self._pool.watch(self)
        try:
            if isinstance(body, (bytes, bytearray)):
                try:
                    if len(body) <= _INLINE_BODY:
                        self.transport.write(head + body)
                    else:
                        self.transport.writelines((head, body))
                except RuntimeError:  # uvloop: the handle closed before connection_lost ran
                    lost = StaleConnection if self._served else ConnectionLost
                    raise lost("The connection closed before the request was sent.") from None
            else:
                await self._send_body(head, body, length, deadline)
            await waiter
        except BaseException:
            # Timed out, cancelled (the caller went away), too large or lost, or the streamed
            # body failed: never reuse.
            self.waiter = None  # nobody will await it now
            if waiter.done() and not waiter.cancelled():
                waiter.exception()  # an error that came during the upload: superseded
            self.fail(ConnectionLost("The request was abandoned."))
            self._stop_timer()
            raise

    async def _send_body(
        self, head: bytes, body: AsyncIterable[bytes], length: int | None, deadline: float | None
    ) -> None:
        """Write the head, then each chunk the iterable yields, pulling the next only while the
        transport is below its high-water mark. Returns early, the body cut short, when a final
        response or a failure came first: the caller's wait on the response then tells which.
        """
        self._unsent = True
        chunks = aiter(body)
        sent = since_yield = 0
        # The deadline watcher fails the connection, which wakes a paused writer, but it cannot
        # interrupt an iterable that is slow to yield: this timer, for streamed bodies only, can.
        async with asyncio.timeout_at(deadline):
            if not self._write(head):
                return
            while True:
                while self._write_paused and not self._upload_over():
                    drain = self._drain = self.loop.create_future()
                    await drain
                    since_yield = 0
                if self._upload_over():
                    return
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                size = len(chunk)
                if not size:
                    continue  # in a chunked body, an empty chunk would end it
                sent += size
                if length is not None and sent > length:
                    raise BodyLengthMismatch(length, sent, more=True)
                if self._upload_over():
                    return  # while the iterable was busy
                sent_ok = (
                    self._write(chunk)
                    if length is not None
                    else self._write(b"%x\r\n" % size, chunk, b"\r\n")
                )
                if not sent_ok:
                    return
                since_yield += size
                if since_yield >= _YIELD_EVERY and not self._write_paused:
                    since_yield = 0
                    await asyncio.sleep(0)
        if length is not None and sent != length:
            raise BodyLengthMismatch(length, sent, more=False)
        if length is None and not self._write(b"0\r\n\r\n"):
            return
        self._unsent = False

    def _upload_over(self) -> bool:
        """A final response or a failure came: the rest of the body would go nowhere useful."""
        return self.status != 0 or self.error is not None

    def _write(self, *parts: bytes) -> bool:
        """False if the connection is already gone, its error on the way to the response's
        waiter."""
        try:
            if len(parts) == 1:
                self.transport.write(parts[0])
            else:
                self.transport.writelines(parts)
        except RuntimeError:  # uvloop: the handle closed before connection_lost ran
            self.fail(ConnectionLost("The connection closed while the request was being sent."))
            return False
        return True

    def finish(self) -> None:
        """The caller is done with the response: pool the connection if it can be reused."""
        self._stop_timer()
        self._active = False
        self._served += 1
        if self.done and self._keep_alive and self.error is None and not self._unsent:
            if self.paused:
                self.paused = False
                self.transport.resume_reading()
            self._pool.checkin(self)
        else:
            self.fail(ConnectionLost("The connection cannot be reused."))

    def fail(self, error: BaseException) -> None:
        """End the exchange with ``error`` (if still open) and close the connection."""
        if self.error is None:
            self.error = error
            waiter = self.waiter
            if waiter is not None:
                self.waiter = None
                if not waiter.done():
                    waiter.set_exception(error)
        self._keep_alive = False
        self._wake_writer()
        self.close()

    def close(self) -> None:
        self._keep_alive = False
        transport = self.transport
        if not transport.is_closing():
            transport.abort()

    def expire(self) -> None:
        if not self.done:
            self.fail(TimeoutError("The response did not arrive in time."))

    def _stop_timer(self) -> None:
        self._pool.unwatch(self)

    def _wake_writer(self) -> None:
        drain = self._drain
        if drain is not None:
            self._drain = None
            if not drain.done():
                drain.set_result(None)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._pool._all.add(self)

    def data_received(self, data: bytes) -> None:
        if not self._active:
            self.close()  # bytes while idle: the connection is out of step
            return
        self._started = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self.done:
                self.close()  # bytes past the response we asked for (``_Surplus``)
            else:
                self.fail(InvalidResponse(f"Invalid HTTP response from the server: {exc}"))

    def eof_received(self) -> bool:
        if self._active and self.status and not self.done and not _framed(self.headers):
            self._complete(keep_alive=False)  # a close-delimited body ends here
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._active and not self.done:
            if self._served and not self._started:
                self.fail(StaleConnection("The idle connection was closed by the server."))
            else:
                self.fail(ConnectionLost("The server closed the connection mid-response."))
        self._keep_alive = False
        self._wake_writer()
        self._pool.discard(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writer()

    # --- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.done:
            raise _Surplus
        self.headers = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self.headers
        prior = headers.get(key)
        headers[key] = text if prior is None else f"{prior}, {text}"

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:
            return  # interim (100, 103): the final response follows on the same connection
        self.status = status
        if self._drain is not None:
            self._wake_writer()  # an early answer: the upload stops
        headers = self.headers
        limit = self._limit
        if limit is None:
            # Decided once here rather than in an ``on_chunk_header`` callback: that would be
            # one more Python call per chunk on a path that must pass 50,000 chunks/s.
            coding = headers.get("transfer-encoding")
            self._part = b"" if coding is not None and _chunked(coding) else None
            self._wake()
        else:
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                self.fail(BodyTooLarge(limit))

    def on_body(self, body: bytes) -> None:
        if self.error is not None:
            return
        self.buffered += len(body)
        limit = self._limit
        if limit is not None:  # read whole: the pieces are joined at the end anyway
            self.chunks.append(body)
            if self.buffered > limit:
                self.fail(BodyTooLarge(limit))
            return
        part = self._part
        if part is None:  # not chunked: hand out what each read brings
            self.chunks.append(body)
            self._handed_out()
        elif not part:
            self._part = body  # the usual case: the whole chunk in one read
        else:
            self._gather(part, body)

    def chunk_complete(self) -> None:
        """llhttp's ``on_chunk_complete``, wired to the stream mode's parser only."""
        part = self._part
        if part:  # the empty last chunk ends the body and is not handed out
            self._part = b""
            pieces = self._pieces
            if pieces:
                part = b"".join(pieces)
                pieces.clear()
            self.chunks.append(part)
            # ``_handed_out`` inlined: this runs once per chunk.
            if self.buffered > HIGH_WATER and not self.paused:
                self.paused = True
                self.transport.pause_reading()
            waiter = self.waiter
            if waiter is not None:
                self.waiter = None
                if not waiter.done():
                    waiter.set_result(None)

    def _gather(self, first: bytes, body: bytes) -> None:
        """Keep a piece of a chunk that spans reads; hand out a chunk that grew too big."""
        pieces = self._pieces
        if not pieces:
            pieces.append(first)
            self._gathered = len(first)
        pieces.append(body)
        self._gathered += len(body)
        if self._gathered >= MAX_CHUNK:
            self._part = b""  # still inside the chunk: its next bytes start a new piece
            self.chunks.append(b"".join(pieces))
            pieces.clear()
            self._handed_out()

    def _handed_out(self) -> None:
        """A piece was queued for the stream's consumer: wake it, pause if too far ahead."""
        if self.buffered > HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self.status and self.error is None:
            self._complete(keep_alive=self._parser.should_keep_alive())

    def _complete(self, *, keep_alive: bool) -> None:
        self.done = True
        self._keep_alive = keep_alive
        self._wake()


class _ChunkCallbacks:
    """The connection's parser callbacks plus ``on_chunk_complete``, for the stream mode's parser.

    httptools looks the callbacks up once, when the parser is made, so the whole-body parser
    (made on the connection itself, which has no ``on_chunk_complete``) never calls it.
    """

    __slots__ = (
        "on_body",
        "on_chunk_complete",
        "on_header",
        "on_headers_complete",
        "on_message_begin",
        "on_message_complete",
    )

    def __init__(self, conn: _Connection) -> None:
        self.on_message_begin = conn.on_message_begin
        self.on_header = conn.on_header
        self.on_headers_complete = conn.on_headers_complete
        self.on_body = conn.on_body
        self.on_chunk_complete = conn.chunk_complete
        self.on_message_complete = conn.on_message_complete


def _framed(headers: dict[str, str]) -> bool:
    """Whether the body's end is marked; if not, it ends where the connection does."""
    coding = headers.get("transfer-encoding")
    return "content-length" in headers or (coding is not None and _chunked(coding))


def _chunked(transfer_encoding: str) -> bool:
    """Whether llhttp frames the body as chunked: only when ``chunked`` is the last coding."""
    return transfer_encoding.rpartition(",")[2].strip().lower() == "chunked"
