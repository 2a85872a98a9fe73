"""One call to a loaded model: ``POST /invocations`` and ``POST /models/<name>/invoke``.

The hot path is a header scan, one body read, one hop to the worker thread pool, and one or two
``send`` calls. Nothing is logged per successful request.

Streaming: when the pipeline returns a ``Stream``, the first item is produced before the
response starts, so a failure before the first byte is still an ordinary error response and
response headers that the handler set up to then are sent. Each later item is one HTTP chunk,
flushed as soon as it is produced (``more_body=True``). A sync iterator advances one ``next()``
per hop to the worker pool, so the event loop never runs user code. If the iterator raises
mid-stream the exception propagates: uvicorn logs it with its traceback and closes the
connection without the terminating chunk, so the caller sees a broken stream rather than a
truncated success. If the client goes away, the iterator is closed (its ``finally`` runs).

Sessions (when enabled): a call naming a session runs under that session's lock for its whole
duration, streams included, so one session's calls never overlap (``sessions.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from sagehost.modelhost.asgi import (
    EMPTY_BODY,
    Message,
    Receive,
    Scope,
    Send,
    TooLarge,
    header_value,
    read_body,
    send_error,
    send_json,
)
from sagehost.modelhost.context import Context, RawHeaders
from sagehost.modelhost.errors import BadRequestError, PayloadTooLargeError
from sagehost.modelhost.pipeline import Complete, Pipeline, Stream
from sagehost.modelhost.sessions import (
    NEW_SESSION,
    REQUEST_CLOSE,
    REQUEST_NEW_SESSION,
    Session,
    SessionManager,
    request_type,
    unknown_session,
)
from sagehost.modelhost.workers import WorkerPool
from sagehost.protocol.container import (
    HEADER_CLOSED_SESSION_ID,
    HEADER_NEW_SESSION_ID,
    HEADER_SESSION_ID,
)

Chunk = tuple[bytes, str | None]

logger = logging.getLogger("sagehost.modelhost")

_SESSION_HEADER = HEADER_SESSION_ID.lower().encode("ascii")
_NEW_SESSION_HEADER = HEADER_NEW_SESSION_ID.lower()
_CLOSED_SESSION_HEADER = HEADER_CLOSED_SESSION_ID.lower().encode("ascii")


class ServedModel:
    """A loaded pipeline as the HTTP layer serves it: its sessions (if enabled) and, for
    unloading, how many calls are using it."""

    __slots__ = ("_calls", "_idle", "module_key", "name", "pipeline", "sessions", "url")

    def __init__(
        self,
        pipeline: Pipeline,
        sessions: SessionManager | None = None,
        *,
        name: str = "",
        url: str = "",
        module_key: str = "",
    ) -> None:
        self.pipeline = pipeline
        self.sessions = sessions
        self.name = name
        self.url = url
        self.module_key = module_key
        self._calls = 0
        self._idle: asyncio.Event | None = None

    def begin(self) -> None:
        self._calls += 1

    def end(self) -> None:
        self._calls -= 1
        if self._calls == 0 and self._idle is not None:
            self._idle.set()

    async def drained(self) -> None:
        """Return once no call is using the model (new calls must already be refused)."""
        while self._calls:
            self._idle = asyncio.Event()
            await self._idle.wait()


class Invocations:
    """Runs calls against a ``ServedModel``: content negotiation, sessions, streaming."""

    def __init__(self, pool: WorkerPool, *, default_accept: str, max_payload_bytes: int) -> None:
        self._pool = pool
        self._default_accept = default_accept
        self._max_payload = max_payload_bytes

    async def __call__(
        self, model: ServedModel, scope: Scope, receive: Receive, send: Send
    ) -> None:
        content_type: str | None = None
        accept: str | None = None
        session_id: str | None = None
        length = b"0"
        raw_headers = scope["headers"]
        for name, value in raw_headers:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"content-length":
                length = value
            elif name == _SESSION_HEADER:
                session_id = value.decode("latin-1")
        try:
            # httptools has validated Content-Length, so int() cannot fail here.
            body = await read_body(receive, self._max_payload, int(length))
        except TooLarge as exc:
            error = PayloadTooLargeError(f"request body exceeds {self._max_payload} bytes")
            # An undrained body cannot be followed by another request on this connection.
            await send_error(send, error, None if exc.drained else [(b"connection", b"close")])
            return
        if not accept or accept == "*/*":
            accept = self._default_accept
        call = _Call(self._pool, model.pipeline, body, content_type, accept, receive, send)
        if model.sessions is None or session_id is None:
            await call.run(Context(model.pipeline.model_dir, raw_headers))
        elif session_id == NEW_SESSION:
            await call.open_session(model.sessions, raw_headers)
        else:
            await call.in_session(model.sessions, session_id, raw_headers)


class _Call:
    """The state of one call while it runs."""

    __slots__ = ("accept", "body", "content_type", "pipeline", "pool", "receive", "send")

    def __init__(
        self,
        pool: WorkerPool,
        pipeline: Pipeline,
        body: bytes,
        content_type: str | None,
        accept: str,
        receive: Receive,
        send: Send,
    ) -> None:
        self.pool = pool
        self.pipeline = pipeline
        self.body = body
        self.content_type = content_type
        self.accept = accept
        self.receive = receive
        self.send = send

    async def run(self, context: Context, forced: dict[str, str] | None = None) -> bool:
        """Run the handlers and answer; True when the answer was a success. ``forced`` response
        headers are the runtime's own and override any a handler set."""
        try:
            result = await self.pool.run(
                self.pipeline.invoke, self.body, self.content_type, self.accept, context
            )
            if forced:
                context.response_headers.update(forced)
            start = _start_message(result, context) if type(result) is Complete else None
        except Exception as exc:
            await send_error(self.send, exc)
            return False
        if start is not None:
            assert isinstance(result, Complete)
            await self.send(start)
            await self.send({"type": "http.response.body", "body": result.body, "more_body": False})
            return True
        assert isinstance(result, Stream)
        return await _stream(result, context, self.pool, self.receive, self.send)

    async def open_session(self, sessions: SessionManager, raw_headers: RawHeaders) -> None:
        kind = request_type(self.body)
        if kind == REQUEST_CLOSE:
            error = BadRequestError(f"a {REQUEST_CLOSE} request must name an open session")
            await send_error(self.send, error)
            return
        context = Context(self.pipeline.model_dir, raw_headers)
        try:
            session = await sessions.open(context)
        except Exception as exc:
            await send_error(self.send, exc)
            return
        announced = f"{session.session_id}; Expires={session.expires_header}"
        async with session.lock:
            if kind == REQUEST_NEW_SESSION:
                reply = {"sessionId": session.session_id, "expiresAt": session.expires_header}
                extra = [(_NEW_SESSION_HEADER.encode("ascii"), announced.encode("ascii"))]
                await send_json(self.send, 200, reply, extra)
            elif not await self.run(context, {_NEW_SESSION_HEADER: announced}):
                # The client was never told the id, so the session could never be used.
                await sessions.close(session, context)

    async def in_session(
        self, sessions: SessionManager, session_id: str, raw_headers: RawHeaders
    ) -> None:
        try:
            session: Session = sessions.find(session_id)
        except BadRequestError as exc:
            await send_error(self.send, exc)
            return
        async with session.lock:
            if session.closed:  # closed or expired while this call waited for the lock
                await send_error(self.send, unknown_session(session_id))
                return
            context = Context(self.pipeline.model_dir, raw_headers, session)
            if request_type(self.body) != REQUEST_CLOSE:
                await self.run(context)
                return
            await sessions.close(session, context)
            reply = {"sessionId": session_id, "status": "closed"}
            await send_json(self.send, 200, reply, [(_CLOSED_SESSION_HEADER, session_id.encode())])


async def _stream(
    stream: Stream, context: Context, pool: WorkerPool, receive: Receive, send: Send
) -> bool:
    items = stream.items
    encode = stream.encode
    finished = False
    next_chunk: Callable[[], Awaitable[Chunk | None]]

    if isinstance(items, Iterator):
        sync_items = items

        def pull() -> Chunk | None:
            try:
                item = next(sync_items)
            except StopIteration:
                return None
            return encode(item)

        def next_chunk() -> Awaitable[Chunk | None]:
            return pool.run(pull)
    else:
        async_items: AsyncIterator[Any] = items

        async def next_chunk() -> Chunk | None:
            try:
                item = await async_items.__anext__()
            except StopAsyncIteration:
                return None
            if stream.encode_is_user_code:
                return await pool.run(encode, item)
            return encode(item)

    watch: asyncio.Future[Message] | None = None
    try:
        try:
            chunk = await next_chunk()
            content_type = chunk[1] if chunk is not None and chunk[1] else stream.content_type
            headers = [(b"content-type", header_value(content_type))]
            if context.response_headers:
                headers += _extra_headers(context)
        except Exception as exc:
            await send_error(send, exc)
            return False
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        # Resolves with http.disconnect once the client has gone (the body is fully read).
        watch = asyncio.ensure_future(receive())
        while chunk is not None:
            if chunk[0]:
                await send({"type": "http.response.body", "body": chunk[0], "more_body": True})
            if watch.done():
                return True
            chunk = await next_chunk()
        finished = True
        await send(EMPTY_BODY)
        return True
    finally:
        if watch is not None:
            watch.cancel()
        # Unless exhausted, close it: a client that left or an output_fn that raised leaves
        # the generator suspended, and its cleanup should run now, not at garbage collection.
        if not finished:
            await _close(items, pool)


async def _close(items: object, pool: WorkerPool) -> None:
    """Close an abandoned iterator so the handler's ``finally`` blocks run."""
    try:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()
            return
        close = getattr(items, "close", None)
        if close is not None:
            await pool.run(close)
    except Exception:
        logger.exception("closing an abandoned prediction stream failed")


def _start_message(result: Complete, context: Context) -> Message:
    headers = [
        (b"content-type", header_value(result.content_type)),
        (b"content-length", b"%d" % len(result.body)),
    ]
    if context.response_headers:
        headers += _extra_headers(context)
    return {"type": "http.response.start", "status": 200, "headers": headers}


def _extra_headers(context: Context) -> list[tuple[bytes, bytes]]:
    # Names and values were checked to be ASCII by Context.set_response_header.
    return [(k.encode("ascii"), v.encode("ascii")) for k, v in context.response_headers.items()]
