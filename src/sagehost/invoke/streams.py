"""InvokeEndpointWithResponseStream: open a container's response as a stream of chunks.

A failure before the first chunk is an ordinary :class:`ModelFailed` (the client gets an error
response, not a stream). Once the first chunk is in hand the stream is the client's, and a
failure becomes :class:`ModelStreamFailed`, which the gateway sends as an exception event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from sagehost.core.errors import (
    ContainerTimeout,
    ContainerUnreachable,
    ModelStreamFailed,
)
from sagehost.core.invocation import Caller, InvokeInput, StreamOutput
from sagehost.core.ports import ContainerRequest
from sagehost.invoke.service import (
    Invoker,
    connection_failed,
    container_error,
    forwarded_headers,
    timed_out,
)

# How much of a failed container's error body is read for the error message.
ERROR_BODY_LIMIT = 64 * 1024
MODEL_INVOCATION_TIME_EXCEEDED = "ModelInvocationTimeExceeded"
STREAM_BROKEN = "StreamBroken"


@asynccontextmanager
async def open_stream(
    invoker: Invoker, caller: Caller, request: InvokeInput, *, stream_limit_s: float
) -> AsyncIterator[StreamOutput]:
    """Route the call and open the container's stream; leaving the context closes it.

    The endpoint's invocation timeout bounds each wait for the next chunk (the first one
    included); ``stream_limit_s`` bounds the whole stream.
    """
    endpoint = invoker.admit(caller, request)
    variant, instance = await invoker.pick(endpoint, request.target_variant)
    idle_s = endpoint.invocation_timeout_s
    call = ContainerRequest(
        body=request.body, headers=forwarded_headers(request), timeout_s=stream_limit_s
    )
    async with AsyncExitStack() as stack:
        try:
            async with asyncio.timeout(idle_s):
                stream = await stack.enter_async_context(instance.invoke_stream(call))
                if not 200 <= stream.status < 300:
                    body = await _read_capped(stream.chunks, ERROR_BODY_LIMIT)
                    raise container_error(variant.container, endpoint.name, stream.status, body)
                first = await anext(stream.chunks, None)
        except (TimeoutError, ContainerTimeout):
            raise timed_out(variant.container) from None
        except ContainerUnreachable as error:
            raise connection_failed(variant.container, endpoint.name, error) from None
        yield StreamOutput(
            invoked_variant=variant.name,
            first=first,
            rest=_rest(stream.chunks, idle_s, stream_limit_s, variant.container)
            if first is not None
            else _empty(),
            content_type=stream.headers.get("content-type"),
            custom_attributes=stream.headers.get("x-amzn-sagemaker-custom-attributes"),
        )


async def _rest(
    chunks: AsyncIterator[bytes], idle_s: float, limit_s: float, container: str
) -> AsyncIterator[bytes]:
    while True:
        try:
            async with asyncio.timeout(idle_s):
                chunk = await anext(chunks, None)
        except TimeoutError:
            raise ModelStreamFailed(
                f"Container {container} sent nothing for {idle_s:g} seconds.",
                MODEL_INVOCATION_TIME_EXCEEDED,
            ) from None
        except ContainerTimeout:
            raise ModelStreamFailed(
                f"The response stream from container {container} ran past the "
                f"{limit_s:g}-second limit.",
                MODEL_INVOCATION_TIME_EXCEEDED,
            ) from None
        except ContainerUnreachable as error:
            raise ModelStreamFailed(
                f"The response stream from container {container} broke: {error.message}",
                STREAM_BROKEN,
            ) from None
        if chunk is None:
            return
        yield chunk


async def _empty() -> AsyncIterator[bytes]:
    nothing: tuple[bytes, ...] = ()
    for chunk in nothing:
        yield chunk


async def _read_capped(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        parts.append(chunk[: limit - size])
        size += len(parts[-1])
        if size >= limit:
            break
    return b"".join(parts)
