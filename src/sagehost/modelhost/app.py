"""The container-contract ASGI application: ``GET /ping`` and ``POST /invocations``.

A raw ASGI callable: the hot path is a header scan, one body read, one hop to the worker thread
pool, and one or two ``send`` calls. Nothing is logged per successful request.

Streaming: when the pipeline returns a ``Stream``, the first item is produced before the
response starts, so a failure before the first byte is still an ordinary error response and
response headers that the handler set up to then are sent. Each later item is one HTTP chunk,
flushed as soon as it is produced (``more_body=True``). A sync iterator advances one ``next()``
per hop to the worker pool, so the event loop never runs user code. If the iterator raises
mid-stream the exception propagates: uvicorn logs it with its traceback and closes the
connection without the terminating chunk, so the caller sees a broken stream rather than a
truncated success. If the client goes away, the iterator is closed (its ``finally`` runs).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from typing import Any

from sagehost.modelhost.context import Context
from sagehost.modelhost.errors import (
    ModelHostError,
    ModelNotReadyError,
    PayloadTooLargeError,
    status_and_message,
)
from sagehost.modelhost.pipeline import Complete, Pipeline, Stream
from sagehost.modelhost.workers import WorkerPool
from sagehost.protocol.container import INVOCATIONS_PATH, PING_PATH

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Chunk = tuple[bytes, str | None]

logger = logging.getLogger("sagehost.modelhost")

_TEXT = b"text/plain; charset=utf-8"
# Constant messages: uvicorn copies what it needs and never mutates them.
_PING_READY = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
#: How much of an oversized body is read and thrown away so the 413 reaches the client.
_DRAIN_LIMIT = 64 * 1024 * 1024
_EMPTY_BODY = {"type": "http.response.body", "body": b"", "more_body": False}


class ModelHostApp:
    """Serves one model. It answers 503 until ``set_ready`` hands it the loaded pipeline."""

    def __init__(
        self, *, pool: WorkerPool, model_dir: str, default_accept: str, max_payload_bytes: int
    ) -> None:
        self._pool = pool
        self._model_dir = model_dir
        self._default_accept = default_accept
        self._max_payload = max_payload_bytes
        self._pipeline: Pipeline | None = None

    def set_ready(self, pipeline: Pipeline) -> None:
        """Called from the loading thread; one attribute store, so no lock is needed."""
        self._pipeline = pipeline

    @property
    def ready(self) -> bool:
        return self._pipeline is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        method = scope["method"]
        if path == INVOCATIONS_PATH:
            if method == "POST":
                await self._invocations(scope, receive, send)
            else:
                await _send_text(send, 405, "method not allowed", [(b"allow", b"POST")])
        elif path == PING_PATH:
            if method != "GET":
                await _send_text(send, 405, "method not allowed", [(b"allow", b"GET")])
            elif self._pipeline is not None:
                await send(_PING_READY)
                await send(_EMPTY_BODY)
            else:
                await _send_text(send, 503, "model is loading")
        else:
            await _send_text(send, 404, "not found")

    async def _invocations(self, scope: Scope, receive: Receive, send: Send) -> None:
        pipeline = self._pipeline
        if pipeline is None:
            await _send_error(send, ModelNotReadyError("model is loading"))
            return
        content_type: str | None = None
        accept: str | None = None
        declared_length = b"0"
        raw_headers = scope["headers"]
        for name, value in raw_headers:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"accept":
                accept = value.decode("latin-1")
            elif name == b"content-length":
                declared_length = value
        try:
            # httptools has validated Content-Length, so int() cannot fail here.
            body = await _read_body(receive, self._max_payload, int(declared_length))
        except _TooLarge as exc:
            await self._too_large(send, exc.drained)
            return
        if not accept or accept == "*/*":
            accept = self._default_accept

        context = Context(self._model_dir, raw_headers)
        try:
            result = await self._pool.run(pipeline.invoke, body, content_type, accept, context)
            start = _start_message(result, context) if type(result) is Complete else None
        except Exception as exc:
            await _send_error(send, exc)
            return
        if start is not None:
            assert isinstance(result, Complete)
            await send(start)
            await send({"type": "http.response.body", "body": result.body, "more_body": False})
        else:
            assert isinstance(result, Stream)
            await self._stream(result, context, receive, send)

    async def _too_large(self, send: Send, drained: bool) -> None:
        error = PayloadTooLargeError(f"request body exceeds {self._max_payload} bytes")
        # An undrained body cannot be followed by another request on this connection.
        await _send_error(send, error, None if drained else [(b"connection", b"close")])

    async def _stream(self, stream: Stream, context: Context, receive: Receive, send: Send) -> None:
        pool = self._pool
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
                headers = [(b"content-type", _header_value(content_type))]
                if context.response_headers:
                    headers += _extra_headers(context)
            except Exception as exc:
                await _send_error(send, exc)
                return
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            # Resolves with http.disconnect once the client has gone (the body is fully read).
            watch = asyncio.ensure_future(receive())
            while chunk is not None:
                if chunk[0]:
                    await send({"type": "http.response.body", "body": chunk[0], "more_body": True})
                if watch.done():
                    return
                chunk = await next_chunk()
            finished = True
            await send(_EMPTY_BODY)
        finally:
            if watch is not None:
                watch.cancel()
            # Unless exhausted, close it: a client that left or an output_fn that raised leaves
            # the generator suspended, and its cleanup should run now, not at garbage collection.
            if not finished:
                await _close(items, pool)


class _TooLarge(Exception):
    def __init__(self, drained: bool) -> None:
        self.drained = drained


async def _read_body(receive: Receive, limit: int, declared_length: int) -> bytes:
    """The whole request body; raises ``_TooLarge`` once it exceeds ``limit`` bytes.

    An oversized body is still read and discarded, up to ``_DRAIN_LIMIT`` bytes: clients such as
    http.client send the whole body before reading the response, and would see a broken pipe
    instead of the 413 if the connection closed under them.
    """
    message = await receive()
    body: bytes = message.get("body", b"")
    more = message.get("more_body", False)
    if not more and declared_length <= limit and len(body) <= limit:
        return body
    parts = [body]
    size = len(body)
    while more and size <= limit and declared_length <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return b""  # the client left; the response will go nowhere
        part = message.get("body", b"")
        size += len(part)
        parts.append(part)
        more = message.get("more_body", False)
    if size <= limit and declared_length <= limit:
        return b"".join(parts)
    parts.clear()
    while more and size <= _DRAIN_LIMIT:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    raise _TooLarge(drained=not more)


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
        (b"content-type", _header_value(result.content_type)),
        (b"content-length", b"%d" % len(result.body)),
    ]
    if context.response_headers:
        headers += _extra_headers(context)
    return {"type": "http.response.start", "status": 200, "headers": headers}


def _header_value(value: str) -> bytes:
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"content type {value!r} is not printable ASCII")
    return value.encode("ascii")


def _extra_headers(context: Context) -> list[tuple[bytes, bytes]]:
    # Names and values were checked to be ASCII by Context.set_response_header.
    return [(k.encode("ascii"), v.encode("ascii")) for k, v in context.response_headers.items()]


async def _send_error(
    send: Send, exc: BaseException, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    status, message = status_and_message(exc)
    # The traceback goes to the log (the container log), never to the caller. A handler's own
    # 4xx is a verdict on the request, so one line is enough.
    if status >= 500 and not isinstance(exc, ModelHostError):
        logger.error("invocation failed with %d: %s", status, message, exc_info=exc)
    elif not isinstance(exc, ModelHostError):
        logger.warning("invocation answered %d: %s", status, message)
    await _send_text(send, status, message, extra)


async def _send_text(
    send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = text.encode("utf-8")
    headers = [(b"content-type", _TEXT), (b"content-length", b"%d" % len(body))]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
