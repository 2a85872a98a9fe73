"""The cheapest multi-model container (§8.4), also serving the single-model contract, for
measuring what sagehost's multi-model routing costs on top of a plain call.

``POST /invocations`` and ``POST /models/<name>/invoke`` echo the body; ``POST /models`` loads a
model (it only remembers the name: loading costs nothing here), ``DELETE /models/<name>``
forgets it, ``GET /models/<name>`` says whether it is loaded. Raw ASGI on uvicorn with uvloop
and httptools, as bench/containers/echo_server.py. Usage::

    SAGEMAKER_BIND_TO_PORT=8080 python bench/containers/mme_echo_server.py
"""

from __future__ import annotations

import json

# _serve.py is beside this file (run as a script)
from _serve import Message, Receive, Send, answer, content_type, read_body, serve

loaded: set[str] = set()


async def app(scope: Message, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    body = await read_body(receive)
    kind = content_type(scope)
    if path == "/ping":
        await answer(send, 200, b"", b"text/plain")
    elif path == "/invocations":
        await answer(send, 200, body, kind)
    elif path == "/models" and method == "POST":
        name = json.loads(body)["model_name"]
        status = 409 if name in loaded else 200
        loaded.add(name)
        await answer(send, status, b"{}", b"application/json")
    elif path.startswith("/models/"):
        name, _, action = path[len("/models/") :].partition("/")
        if name not in loaded:
            await answer(send, 404, b"{}", b"application/json")
        elif method == "DELETE":
            loaded.discard(name)
            await answer(send, 200, b"{}", b"application/json")
        elif action == "invoke":
            await answer(send, 200, body, kind)
        else:
            await answer(send, 200, b"{}", b"application/json")
    else:
        await answer(send, 404, b"{}", b"application/json")


def main() -> None:
    serve(app)


if __name__ == "__main__":
    main()
