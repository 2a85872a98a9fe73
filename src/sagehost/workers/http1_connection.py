"""One connection of the container client (``http1``): an asyncio protocol that sends a request
and feeds the response through httptools' parser, whole or as a stream with back-pressure.

The errors the client raises live here too, since this is where they are raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, Any, cast

import httptools

if TYPE_CHECKING:
    from sagehost.workers.http1 import ConnectionPool

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


class Connection(asyncio.Protocol):
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

    def __init__(self, conn: Connection) -> None:
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
