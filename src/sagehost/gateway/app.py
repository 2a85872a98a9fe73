"""The ASGI application: one port for the runtime API and the control plane.

Routing is a handful of string checks rather than a router: the invoke path is the hot path and
every microsecond here is paid on each call.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import uuid
from typing import Any
from urllib.parse import unquote

from sagehost.control.plane import ControlPlane
from sagehost.core.invocation import AsyncAccepted, AsyncInput, Caller, InvokeInput, InvokeOutput
from sagehost.gateway.auth import Authenticator
from sagehost.gateway.errors import control_error, runtime_error
from sagehost.gateway.http import (
    BodyTooLarge,
    ClientGone,
    Headers,
    Receive,
    Scope,
    Send,
    declared_length,
    read_body,
    respond,
)
from sagehost.gateway.streaming import send_stream
from sagehost.invoke.loaded_models import LoadedModels
from sagehost.invoke.service import Invoker
from sagehost.invoke.shadow import shadow_report
from sagehost.invoke.streams import open_stream
from sagehost.jobs.service import AsyncInference
from sagehost.protocol import errors as wire
from sagehost.protocol.control import ControlProtocol, ControlRequestInvalid
from sagehost.protocol.runtime import SIX_MIB, RequestInvalid, RuntimeOperation

log = logging.getLogger("sagehost.gateway")

_AMZ_JSON = b"application/x-amz-json-1.1"
_ENDPOINTS = "/endpoints/"
# Bodies beyond this are refused before they are read; the runtime limit is 6 MiB, and the
# control plane's largest inputs are far smaller.
MAX_BODY = SIX_MIB


class Gateway:
    def __init__(
        self,
        *,
        authenticator: Authenticator,
        control: ControlPlane,
        control_protocol: ControlProtocol,
        invoker: Invoker,
        invoke_endpoint: RuntimeOperation,
        invoke_stream: RuntimeOperation,
        invoke_async: RuntimeOperation,
        jobs: AsyncInference,
        stream_limit_s: float = 480.0,
        default_region: str = "us-east-1",
    ) -> None:
        self._auth = authenticator
        self._control = control
        self._control_protocol = control_protocol
        self._invoker = invoker
        self._invoke_op = invoke_endpoint
        self._stream_op = invoke_stream
        self._async_op = invoke_async
        self._runtime_ops = {
            op.path_suffix: op for op in (invoke_endpoint, invoke_stream, invoke_async)
        }
        self._jobs = jobs
        # sagehost's own signed operations on the control-plane port (job status).
        self._own_ops = {
            "SageHost.DescribeAsyncInference": jobs.describe,
            "SageHost.ListAsyncInferences": jobs.list_jobs,
            "SageHost.DescribeShadowTraffic": shadow_report(invoker.find),
            **LoadedModels(invoker.resolve).operations(),
        }
        self._stream_limit_s = stream_limit_s
        self._default_region = default_region
        self._request_ids = RequestIds()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request_id = self._request_ids.next()
        try:
            await self._route(scope, receive, send, request_id)
        except ClientGone:
            return
        except Exception:
            await unhandled(scope, send, request_id)

    async def _route(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        method = scope["method"]
        path: str = scope["path"]
        if method == "POST" and path.startswith(_ENDPOINTS):
            await self._runtime(scope, receive, send, request_id)
        elif method == "POST" and path == "/":
            await self._control_call(scope, receive, send, request_id)
        elif method == "GET" and path == "/ping":
            await respond(send, 200, [(b"x-amzn-requestid", request_id.encode())], b"")
        else:
            await runtime_failure(send, request_id, no_operation(method, path))

    # -- runtime ------------------------------------------------------------------------------

    async def _runtime(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        endpoint_name, suffix = runtime_target(scope)
        caller: Caller | None = None
        headers: Headers = scope["headers"]
        op = self._runtime_ops.get(suffix)
        started = False
        try:
            if op is None:
                raise RequestInvalid(f"Unknown runtime operation /endpoints/{{name}}/{suffix}")
            length = declared_length(headers)
            if length is not None and length > MAX_BODY:
                raise BodyTooLarge(MAX_BODY)
            body = await read_body(receive, MAX_BODY)
            caller = self._auth.caller(scope, body)
            params = op.parse(endpoint_name, headers, len(body))
            if op is self._async_op:
                accepted = await self._jobs.submit(caller, _async_input(params))
                await respond(
                    send, 202, _accepted_headers(accepted, request_id), _accepted_body(accepted)
                )
                return
            request = invoke_input(params, body)
            if op is self._stream_op:
                async with open_stream(
                    self._invoker, caller, request, stream_limit_s=self._stream_limit_s
                ) as stream:
                    started = True
                    await send_stream(stream, receive, send, request_id)
                return
            result = await self._invoker.invoke(caller, request)
        except ClientGone:
            raise
        except BodyTooLarge as error:
            await self._runtime_failure(
                send,
                request_id,
                wire.validation_error(
                    f"Request body is larger than the {error.limit} bytes allowed for "
                    f"{op.name if op else 'this operation'}."
                ),
            )
            return
        except Exception as error:
            if started:  # the stream's status line is out: nothing more can be said
                log.exception("error after a response stream started")
                return
            region = caller.region if caller else self._default_region
            account = caller.account if caller else ""
            await self._runtime_failure(
                send,
                request_id,
                runtime_error(error, region=region, account=account, endpoint=endpoint_name),
            )
            return
        await respond(send, 200, invoke_headers(result, request_id), result.body)

    async def _runtime_failure(self, send: Send, request_id: str, error: wire.WireError) -> None:
        await runtime_failure(send, request_id, error)

    # -- control plane ------------------------------------------------------------------------

    async def _control_call(
        self, scope: Scope, receive: Receive, send: Send, request_id: str
    ) -> None:
        headers: Headers = scope["headers"]
        try:
            length = declared_length(headers)
            if length is not None and length > MAX_BODY:
                raise BodyTooLarge(MAX_BODY)
            body = await read_body(receive, MAX_BODY)
            caller = self._auth.caller(scope, body)
            target = next((v.decode("latin-1") for k, v in headers if k == b"x-amz-target"), None)
            own = self._own_ops.get(target or "")
            if own is not None:
                payload = json.dumps(await own(caller, _json_object(body))).encode()
                await respond(
                    send,
                    200,
                    [(b"content-type", _AMZ_JSON), (b"x-amzn-requestid", request_id.encode())],
                    payload,
                )
                return
            operation = self._control_protocol.operation(target)
            params = self._control_protocol.parse(operation, body)
            result = await self._control.handle(operation, caller, params)
            payload = self._control_protocol.render(operation, result)
        except ClientGone:
            raise
        except BodyTooLarge as error:
            failure = wire.control_validation(f"Request body is larger than {error.limit} bytes.")
            await self._control_failure(send, request_id, failure)
            return
        except Exception as error:
            await self._control_failure(send, request_id, control_error(error))
            return
        await respond(
            send,
            200,
            [(b"content-type", _AMZ_JSON), (b"x-amzn-requestid", request_id.encode())],
            payload,
        )

    async def _control_failure(self, send: Send, request_id: str, error: wire.WireError) -> None:
        status, headers, body = wire.render_json_1_1(error)
        headers.append((b"x-amzn-requestid", request_id.encode()))
        await respond(send, status, headers, body)


def _async_input(params: dict[str, Any]) -> AsyncInput:
    get = params.get
    return AsyncInput(
        endpoint_name=str(params["EndpointName"]),
        input_location=str(params["InputLocation"]),
        content_type=get("ContentType"),
        accept=get("Accept"),
        custom_attributes=get("CustomAttributes"),
        inference_id=get("InferenceId"),
        output_path_extension=get("S3OutputPathExtension"),
        filename=get("Filename"),
        ttl_s=get("RequestTTLSeconds") or 21600,
        invocation_timeout_s=get("InvocationTimeoutSeconds") or 900,
    )


def _accepted_headers(accepted: AsyncAccepted, request_id: str) -> Headers:
    headers: Headers = [
        (b"content-type", b"application/json"),
        (b"x-amzn-requestid", request_id.encode()),
        (b"x-amzn-sagemaker-outputlocation", accepted.output_location.encode()),
    ]
    if accepted.failure_location is not None:
        headers.append((b"x-amzn-sagemaker-failurelocation", accepted.failure_location.encode()))
    return headers


def _accepted_body(accepted: AsyncAccepted) -> bytes:
    return json.dumps({"InferenceId": accepted.inference_id}).encode()


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body) if body.strip() else {}
    except ValueError:
        raise ControlRequestInvalid(
            "The request body is not valid JSON.", "SerializationException"
        ) from None
    if not isinstance(value, dict):
        raise ControlRequestInvalid(
            "The request body must be a JSON object.", "SerializationException"
        )
    return value


class RequestIds:
    """Unique request ids in UUID form without a getrandom() call per request.

    Each id is a random 64-bit prefix drawn once per process followed by a counter, so ids never
    repeat within a process and collide across processes with negligible probability.
    """

    def __init__(self) -> None:
        self._prefix = f"{uuid.uuid4().hex[:16]}"
        self._counter = itertools.count(int.from_bytes(uuid.uuid4().bytes[:6], "big"))

    def next(self) -> str:
        text = self._prefix + f"{next(self._counter) & 0xFFFFFFFFFFFFFFFF:016x}"
        return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-8{text[17:20]}-{text[20:]}"


_MEMBERS = {
    "ContentType": "content_type",
    "Accept": "accept",
    "CustomAttributes": "custom_attributes",
    "TargetModel": "target_model",
    "TargetVariant": "target_variant",
    "TargetContainerHostname": "target_container_hostname",
    "InferenceId": "inference_id",
    "EnableExplanations": "enable_explanations",
    "InferenceComponentName": "inference_component",
    "SessionId": "session_id",
}


def invoke_input(params: dict[str, Any], body: bytes) -> InvokeInput:
    # Only the headers the caller sent are in params: usually two or three.
    optional = {_MEMBERS[k]: v for k, v in params.items() if k in _MEMBERS}
    return InvokeInput(endpoint_name=str(params["EndpointName"]), body=body, **optional)


def runtime_target(scope: Scope) -> tuple[str, str]:
    """The endpoint name and the operation suffix of ``POST /endpoints/{name}/{suffix}``."""
    raw = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1").split("?", 1)[0]
    name_part, _, suffix = raw[len(_ENDPOINTS) :].partition("/")
    return unquote(name_part), suffix


def invoke_headers(result: InvokeOutput, request_id: str) -> Headers:
    """The headers of InvokeEndpoint's answer (§3.2)."""
    out: Headers = [
        (b"x-amzn-invoked-production-variant", result.invoked_variant.encode()),
        (b"x-amzn-requestid", request_id.encode()),
    ]
    if result.content_type is not None:
        out.append((b"content-type", result.content_type.encode("latin-1")))
    if result.custom_attributes is not None:
        out.append(
            (b"x-amzn-sagemaker-custom-attributes", result.custom_attributes.encode("latin-1"))
        )
    if result.new_session_id is not None:
        out.append((b"x-amzn-sagemaker-new-session-id", result.new_session_id.encode("latin-1")))
    if result.closed_session_id is not None:
        out.append(
            (b"x-amzn-sagemaker-closed-session-id", result.closed_session_id.encode("latin-1"))
        )
    return out


def no_operation(method: str, path: str) -> wire.WireError:
    return wire.WireError(404, "UnknownOperationException", f"No operation at {method} {path}")


async def runtime_failure(send: Send, request_id: str, error: wire.WireError) -> None:
    status, headers, body = wire.render_rest_json(error)
    headers.append((b"x-amzn-requestid", request_id.encode()))
    await respond(send, status, headers, body)


async def unhandled(scope: Scope, send: Send, request_id: str) -> None:
    """The outermost catch of an ASGI app: log the traceback here, and only here, and answer
    InternalFailure without detail."""
    log.exception("unhandled error serving %s %s", scope.get("method"), scope.get("path"))
    status, headers, body = wire.render_rest_json(wire.internal_failure())
    headers.append((b"x-amzn-requestid", request_id.encode()))
    # If the response had already started the server refuses a second start; the client then
    # sees the connection close, which is all that is left to tell it.
    with contextlib.suppress(RuntimeError):
        await respond(send, status, headers, body)
