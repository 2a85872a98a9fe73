"""The cheapest container-contract echo server, for measuring sagehost's own capacity.

``GET /ping`` answers 200; ``POST /invocations`` answers the request body with its content
type. Raw ASGI on uvicorn with uvloop and httptools, no thread hop: it spends as little CPU
per call as a Python server can, so the benchmark's two cores go to sagehost and the load
generator. Usage::

    SAGEMAKER_BIND_TO_PORT=8080 python bench/containers/echo_server.py
"""

from __future__ import annotations

# _serve.py is beside this file (run as a script)
from _serve import Message, Receive, Send, answer, content_type, read_body, serve


async def app(scope: Message, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/ping":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await answer(send, 200, await read_body(receive), content_type(scope))


def main() -> None:
    serve(app)


if __name__ == "__main__":
    main()
