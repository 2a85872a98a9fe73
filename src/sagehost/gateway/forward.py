"""A gateway replica's line to the primary gateway process, over loopback.

``Primary.forward`` relays a caller's request unchanged (method, target, headers, body) and the
primary's answer back as it arrives, streams included. The primary authenticates it again: the
caller's signature covers the relayed request, since the signed ``Host`` is sent as it came.
``Primary.routes`` long-polls the routing-table feed (``gateway.feed``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from sagehost.gateway.http import (
    ClientGone,
    Headers,
    Receive,
    Scope,
    Send,
    declared_length,
    read_body,
    respond,
)
from sagehost.protocol import errors as wire
from sagehost.workers.http1 import ConnectionPool, Origin

log = logging.getLogger("sagehost.gateway")

ROUTES_PATH = "/_sagehost/routes"
TOKEN_HEADER = "x-sagehost-replica-token"  # noqa: S105 - a header name
POLL_WAIT_S = 20.0  # how long the primary holds a routes poll with nothing new
_ROUTES_MAX = 256 * 1024 * 1024
# Bodies up to this are read before they are relayed; larger ones (which the primary refuses)
# and chunked ones are streamed on a connection of their own.
INLINE_BODY = 6 * 1024 * 1024
# Set by the relay itself, or meaningful only between the caller and this process.
_HOP = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "expect",
    }
)
_HOP_OUT = frozenset({"connection", "keep-alive", "transfer-encoding", "date", "server"})


class Primary:
    def __init__(self, port: int, token: str) -> None:
        self._port = port
        self._token = token
        self._pool = ConnectionPool()
        self._origin = Origin("127.0.0.1", port)

    async def close(self) -> None:
        await self._pool.close()

    async def routes(self, replica: str, after: int) -> dict[str, Any]:
        response = await self._pool.request(
            self._origin,
            "GET",
            f"{ROUTES_PATH}?replica={replica}&after={after}",
            [(TOKEN_HEADER, self._token)],
            timeout_s=POLL_WAIT_S + 10.0,
            max_body=_ROUTES_MAX,
        )
        if response.status != 200:
            raise ConnectionError(f"routes poll answered {response.status}")
        update: dict[str, Any] = json.loads(response.body)
        return update

    async def forward(
        self, scope: Scope, receive: Receive, send: Send, body: bytes | None = None
    ) -> None:
        """Relay the request to the primary and its answer to the caller. ``body`` is the
        request body when it was already read; otherwise it is streamed from ``receive``."""
        uploaded = asyncio.Event()
        length: int | None = None
        if body is None:
            headers: Headers = scope["headers"]
            length = declared_length(headers)
            chunked = any(name == b"transfer-encoding" for name, _ in headers)
            if not chunked and (length or 0) <= INLINE_BODY:
                # The usual case: read it here, and reuse a pooled connection to the primary.
                body = await read_body(receive, INLINE_BODY)
        if body is None:
            payload: bytes | AsyncIterator[bytes] = _upload(receive, uploaded)
        else:
            payload = body
            length = None
            uploaded.set()
        relay = asyncio.ensure_future(self._relay(scope, send, payload, length))
        watch = asyncio.ensure_future(_disconnect(receive, uploaded))
        try:
            await asyncio.wait({relay, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not relay.done():  # the caller left: so does the request to the primary
                relay.cancel()
            await asyncio.wait({relay})
        if not relay.cancelled():
            relay.result()

    async def _relay(
        self, scope: Scope, send: Send, payload: bytes | AsyncIterator[bytes], length: int | None
    ) -> None:
        host = "127.0.0.1"
        headers: list[tuple[str, str]] = []
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1")
            if name == "host":
                host = raw_value.decode("latin-1")
            elif name not in _HOP:
                headers.append((name, raw_value.decode("latin-1")))
        target = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        query = scope.get("query_string", b"")
        if query:
            target = f"{target}?{query.decode('latin-1')}"
        origin = Origin("127.0.0.1", self._port, authority=host)
        started = False
        try:
            async with self._pool.stream(
                origin,
                scope["method"],
                target,
                headers,
                payload,
                body_length=length,
                deadline=None,
            ) as response:
                out: Headers = [
                    (name.encode("latin-1"), value.encode("latin-1"))
                    for name, value in response.headers.items()
                    if name not in _HOP_OUT
                ]
                await send(
                    {"type": "http.response.start", "status": response.status, "headers": out}
                )
                started = True
                async for chunk in response:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
        except (OSError, ValueError) as error:
            if started:  # the head is out: the caller sees the connection close
                raise ClientGone from error
            if isinstance(error, ValueError):  # nothing a server could take: not sent at all
                failure = wire.validation_error(f"The request cannot be served: {error}")
            else:
                log.warning("could not relay %s %s: %s", scope["method"], target, error)
                failure = wire.WireError(
                    503, "ServiceUnavailable", "The server is restarting. Try again later."
                )
            status, out, body = wire.render_rest_json(failure)
            await respond(send, status, out, body)


async def _upload(receive: Receive, uploaded: asyncio.Event) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            uploaded.set()
            return


async def _disconnect(receive: Receive, uploaded: asyncio.Event) -> None:
    """Return when the caller disconnects (only once its body is read: one reader at a time)."""
    await uploaded.wait()
    while (await receive())["type"] != "http.disconnect":
        pass
