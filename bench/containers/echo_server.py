"""The cheapest container-contract echo server, for measuring sagehost's own capacity.

``GET /ping`` answers 200; ``POST /invocations`` answers the request body with its content
type. Raw ASGI on uvicorn with uvloop and httptools, no thread hop: it spends as little CPU
per call as a Python server can, so the benchmark's two cores go to sagehost and the load
generator. Usage::

    SAGEMAKER_BIND_TO_PORT=8080 python bench/containers/echo_server.py
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from _serve import serve  # beside this file; run as a script

Message = dict[str, Any]


async def app(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/ping":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(parts)
    content_type = next(
        (v for k, v in scope["headers"] if k == b"content-type"), b"application/octet-stream"
    )
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    serve(app)


if __name__ == "__main__":
    main()
