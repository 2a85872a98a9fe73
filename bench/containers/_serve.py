"""How the benchmark containers serve: raw ASGI on uvicorn with uvloop and httptools on
``$SAGEMAKER_BIND_TO_PORT``, nothing logged per request."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def serve(app: Any) -> None:
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")),
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


async def read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


def content_type(scope: Message) -> bytes:
    """The request's Content-Type, as echo containers answer with it."""
    return next(
        (v for k, v in scope["headers"] if k == b"content-type"), b"application/octet-stream"
    )


async def answer(send: Send, status: int, body: bytes, kind: bytes) -> None:
    """A whole answer of ``kind`` (its Content-Type), with its Content-Length."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
