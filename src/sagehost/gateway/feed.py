"""The primary's ASGI application when it has gateway replicas: the gateway on both of its
sockets, plus the routing-table feed (``invoke.replication.RouteFeed``) on the internal one.

The internal socket listens on loopback only; the feed also wants the token the primary gave
its replicas, since any local user could reach a loopback port. Everything else on the internal
socket is an ordinary, signed request relayed by a replica, and is authenticated as such.
"""

from __future__ import annotations

import hmac
import json
from urllib.parse import parse_qs

from sagehost.gateway.forward import POLL_WAIT_S, ROUTES_PATH, TOKEN_HEADER
from sagehost.gateway.http import ASGIApp, Receive, Scope, Send, respond
from sagehost.invoke.replication import RouteFeed


class WithRouteFeed:
    def __init__(
        self, gateway: ASGIApp, feed: RouteFeed, token: str, internal: tuple[str, int]
    ) -> None:
        self._gateway = gateway
        self._feed = feed
        self._token = token.encode()
        self._internal = internal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == ROUTES_PATH:
            server = scope.get("server")
            if server is not None and tuple(server) == self._internal:
                await self._routes(scope, send)
                return
        await self._gateway(scope, receive, send)

    async def _routes(self, scope: Scope, send: Send) -> None:
        token = next((v for k, v in scope["headers"] if k == TOKEN_HEADER.encode()), b"")
        if scope["method"] != "GET" or not hmac.compare_digest(token, self._token):
            await respond(send, 403, [], b"")
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            replica = query["replica"][0]
            after = int(query["after"][0])
        except (KeyError, ValueError):
            await respond(send, 400, [], b"")
            return
        update = await self._feed.poll(replica, after, POLL_WAIT_S)
        await respond(
            send, 200, [(b"content-type", b"application/json")], json.dumps(update).encode()
        )
