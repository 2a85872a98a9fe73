"""ASGI plumbing shared by the single-model and the multi-model applications: message types,
reading a bounded body, and plain-text and JSON answers."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sagehost.modelhost.errors import ModelHostError, ModelsApiError, status_and_message

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

logger = logging.getLogger("sagehost.modelhost")

_TEXT = b"text/plain; charset=utf-8"
_JSON = b"application/json"
#: How much of an oversized body is read and thrown away so the 413 reaches the client.
DRAIN_LIMIT = 64 * 1024 * 1024
# Constant messages: uvicorn copies what it needs and never mutates them.
EMPTY_BODY = {"type": "http.response.body", "body": b"", "more_body": False}
PING_READY = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}


class TooLarge(Exception):
    def __init__(self, drained: bool) -> None:
        self.drained = drained


async def read_body(receive: Receive, limit: int, declared_length: int) -> bytes:
    """The whole request body; raises ``TooLarge`` once it exceeds ``limit`` bytes.

    An oversized body is still read and discarded, up to ``DRAIN_LIMIT`` bytes: clients such as
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
    while more and size <= DRAIN_LIMIT:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    raise TooLarge(drained=not more)


def declared_length(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"content-length":
            # httptools has validated Content-Length, so int() cannot fail here.
            return int(value)
    return 0


def header_value(value: str) -> bytes:
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"content type {value!r} is not printable ASCII")
    return value.encode("ascii")


async def send_body(
    send: Send, status: int, content_type: bytes, body: bytes, extra: Headers | None = None
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_text(send: Send, status: int, text: str, extra: Headers | None = None) -> None:
    await send_body(send, status, _TEXT, text.encode("utf-8"), extra)


async def send_json(send: Send, status: int, value: object, extra: Headers | None = None) -> None:
    await send_body(send, status, _JSON, json.dumps(value).encode("utf-8"), extra)


async def send_error(send: Send, exc: BaseException, extra: Headers | None = None) -> None:
    """A failed call as text/plain with the exception's status (see ``status_and_message``)."""
    status, message = status_and_message(exc)
    # The traceback goes to the log (the container log), never to the caller. A handler's own
    # 4xx is a verdict on the request, so one line is enough.
    if status >= 500 and not isinstance(exc, ModelHostError):
        logger.error("invocation failed with %d: %s", status, message, exc_info=exc)
    elif not isinstance(exc, ModelHostError):
        logger.warning("invocation answered %d: %s", status, message)
    await send_text(send, status, message, extra)


async def send_api_error(send: Send, error: ModelsApiError) -> None:
    body = {"code": error.status, "type": error.kind, "message": error.message}
    await send_json(send, error.status, body)
