"""A streaming model container for bench/stream.py, built to outrun sagehost.

It serves the container contract on ``$SAGEMAKER_BIND_TO_PORT``: ``GET /ping`` answers 200,
and ``POST /invocations`` with a body such as ``{"count": 200000, "size": 16}`` answers 200
with a chunked body of ``count`` chunks of ``size`` bytes, one ASGI ``send`` per chunk, as
fast as uvicorn takes them. ``{"count": 1, "size": 16}`` sends its only chunk as soon as the
request body is read, which is what a time-to-first-event measurement wants.

Raw ASGI on uvicorn with uvloop and httptools: no framework between the loop and ``send``.
Usage::

    SAGEMAKER_BIND_TO_PORT=8080 python bench/containers/stream_server.py
"""

from __future__ import annotations

import json

# _serve.py is beside this file (run as a script)
from _serve import Message, Receive, Send, read_body, serve

_TEXT = [(b"content-type", b"text/plain")]
_STREAM = [(b"content-type", b"application/octet-stream")]
_END = {"type": "http.response.body", "body": b"", "more_body": False}


async def app(scope: Message, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/ping":
        await _answer(send, 200, b"")
    elif scope["path"] == "/invocations" and scope["method"] == "POST":
        await _invocations(receive, send)
    else:
        await _answer(send, 404, b"not found\n")


async def _invocations(receive: Receive, send: Send) -> None:
    try:
        spec = json.loads(await read_body(receive))
        count, size = int(spec["count"]), int(spec["size"])
    except (ValueError, KeyError, TypeError):
        await _answer(send, 400, b'expected {"count": N, "size": S}\n')
        return
    # No content-length, so uvicorn frames the body as chunked: one HTTP chunk per send.
    await send({"type": "http.response.start", "status": 200, "headers": _STREAM})
    # The same message each time: uvicorn reads it and keeps nothing.
    part = {"type": "http.response.body", "body": b"x" * size, "more_body": True}
    for _ in range(count):
        await send(part)
    await send(_END)


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _TEXT})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    serve(app)


if __name__ == "__main__":
    main()
