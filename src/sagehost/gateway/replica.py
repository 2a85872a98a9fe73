"""The ASGI application of a gateway replica process (``--gateway-processes``).

A replica serves plain InvokeEndpoint calls itself, exactly as the primary would: the same
authentication, header validation, routing and error rendering, over its copy of the routing
table (``invoke.replication``). Everything else goes to the primary unchanged
(``gateway.forward``): the control plane, streams, async calls, sessions, and any call its copy
cannot place (an endpoint it does not list, no instance it knows ready, a refused connection,
a routing header its copy may be too old to judge). Such a call has reached no model, so
handing it over never runs it twice.
"""

from __future__ import annotations

from sagehost.core.errors import Handoff, InvalidRequest, NoHealthyInstance
from sagehost.gateway.app import (
    MAX_BODY,
    RequestIds,
    invoke_headers,
    invoke_input,
    no_operation,
    runtime_failure,
    runtime_target,
    unhandled,
)
from sagehost.gateway.auth import Authenticator
from sagehost.gateway.errors import runtime_error
from sagehost.gateway.forward import ROUTES_PATH, Primary
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
from sagehost.invoke.service import Invoker
from sagehost.protocol.runtime import RuntimeOperation

_INVOCATIONS = "invocations"


class ReplicaGateway:
    def __init__(
        self,
        *,
        authenticator: Authenticator,
        invoker: Invoker,
        invoke_endpoint: RuntimeOperation,
        primary: Primary,
        default_region: str = "us-east-1",
    ) -> None:
        self._auth = authenticator
        self._invoker = invoker
        self._op = invoke_endpoint
        self._primary = primary
        self._default_region = default_region
        self._request_ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            method = scope["method"]
            if method == "POST" and scope["path"].startswith("/endpoints/"):
                endpoint_name, suffix = runtime_target(scope)
                if suffix == _INVOCATIONS:
                    await self._invoke(scope, receive, send, endpoint_name)
                    return
            elif method == "GET" and scope["path"] == "/ping":
                request_id = self._request_ids.next()
                await respond(send, 200, [(b"x-amzn-requestid", request_id.encode())], b"")
                return
            elif method not in ("GET", "POST") or scope["path"] == ROUTES_PATH:
                # Nothing to relay: no operation takes them (the feed is the replicas' own).
                error = no_operation(method, scope["path"])
                await runtime_failure(send, self._request_ids.next(), error)
                return
            await self._primary.forward(scope, receive, send)
        except ClientGone:
            return
        except Exception:
            await unhandled(scope, send, self._request_ids.next())

    async def _invoke(self, scope: Scope, receive: Receive, send: Send, endpoint_name: str) -> None:
        headers: Headers = scope["headers"]
        length = declared_length(headers)
        if length is None or length > MAX_BODY:
            # Chunked or too large: the primary's answer, whatever it is, is the one to give.
            await self._primary.forward(scope, receive, send)
            return
        body = await read_body(receive, MAX_BODY)
        request_id = self._request_ids.next()
        caller = None
        try:
            caller = self._auth.caller(scope, body)
            params = self._op.parse(endpoint_name, headers, len(body))
            if "SessionId" in params:  # sessions live in the primary
                raise Handoff
            result = await self._invoker.invoke(caller, invoke_input(params, body))
        except (Handoff, InvalidRequest, NoHealthyInstance):
            # Not in this copy of the table, or nothing there to serve it: the primary answers.
            # On the single-container path, the only one a replica serves, the invoker raises
            # these before any container is called (a NEW_SESSION call, whose answer could
            # raise one, never gets here), so the model never runs twice.
            await self._primary.forward(scope, receive, send, body)
            return
        except ClientGone:
            raise
        except Exception as error:
            region = caller.region if caller else self._default_region
            account = caller.account if caller else ""
            await runtime_failure(
                send,
                request_id,
                runtime_error(error, region=region, account=account, endpoint=endpoint_name),
            )
            return
        await respond(send, 200, invoke_headers(result, request_id), result.body)
