"""InvokeEndpointWithResponseStream: open a container's response as a stream of chunks.

A failure before the first chunk is an ordinary :class:`ModelFailed` (the client gets an error
response, not a stream). Once the first chunk is in hand the stream is the client's, and a
failure becomes :class:`ModelStreamFailed`, which the gateway sends as an exception event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from sagehost.core.chunks import read_capped
from sagehost.core.errors import (
    ContainerRefused,
    ContainerTimeout,
    ContainerUnreachable,
    InvalidRequest,
    ModelStreamFailed,
)
from sagehost.core.invocation import Caller, InvokeInput, StreamOutput
from sagehost.core.ports import ContainerRequest, ContainerStream, Fleet, Instance
from sagehost.invoke.pipelines import feed_last, pick_instance
from sagehost.invoke.routing import Route, choose_instance
from sagehost.invoke.service import (
    Invoker,
    connection_failed,
    container_error,
    forwarded_headers,
    timed_out,
)
from sagehost.invoke.sessions import NEW_SESSION

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
    included); ``stream_limit_s`` bounds the whole stream. A multi-container model streams
    the container TargetContainerHostname names (Direct) or its last one (Serial), after the
    others answered in full: they and the first chunk share the invocation timeout.
    """
    if request.session_id == NEW_SESSION:
        raise InvalidRequest(
            "Sessions cannot be opened by a response stream; call InvokeEndpoint with "
            f"SessionId {NEW_SESSION} first."
        )
    route = await invoker.route(caller, request)
    endpoint, variant = route.endpoint, route.variant
    idle_s = endpoint.invocation_timeout_s
    call = ContainerRequest(
        body=request.body, headers=forwarded_headers(request), timeout_s=stream_limit_s
    )
    loop = asyncio.get_running_loop()
    if variant.containers:
        deadline = loop.time() + idle_s
        target, call = await feed_last(invoker, route, request, call, deadline)
        instance = await pick_instance(invoker, route, target, deadline)
        container, fleet = target.hostname, target.fleet
    else:
        instance = await invoker.pick(route)
        deadline = loop.time() + idle_s
        container, fleet = variant.container, variant.fleet
    async with AsyncExitStack() as stack:
        try:
            async with asyncio.timeout_at(deadline):
                instance, stream = await _enter(invoker, route, fleet, instance, call, stack)
                if not 200 <= stream.status < 300:
                    body = await read_capped(stream.chunks, ERROR_BODY_LIMIT)
                    raise container_error(container, endpoint.name, stream.status, body)
                first = await anext(stream.chunks, None)
        except (TimeoutError, ContainerTimeout):
            raise timed_out(container) from None
        except ContainerUnreachable as error:
            raise connection_failed(container, endpoint.name, error) from None
        if route.instance is not None:
            invoker.sessions.observe(route, request, instance, stream.headers)
        yield StreamOutput(
            invoked_variant=route.variant_name,
            first=first,
            rest=_rest(stream.chunks, idle_s, stream_limit_s, container)
            if first is not None
            else _empty(),
            content_type=stream.headers.get("content-type"),
            custom_attributes=stream.headers.get("x-amzn-sagemaker-custom-attributes"),
        )


async def _enter(
    invoker: Invoker,
    route: Route,
    fleet: Fleet,
    instance: Instance,
    call: ContainerRequest,
    stack: AsyncExitStack,
) -> tuple[Instance, ContainerStream]:
    """Open ``instance``'s stream on ``stack``; returns the instance that answered. As for
    real-time calls, one that refuses the connection (it just died) never saw the call, so
    another ready instance of ``fleet`` gets it, within the instance wait; a session's
    instance is never swapped."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + invoker.instance_wait_s
    delay = 0.005
    while True:
        try:
            return instance, await stack.enter_async_context(instance.invoke_stream(call))
        except ContainerRefused:
            if route.instance is not None or loop.time() >= give_up:
                raise
        await asyncio.sleep(delay)  # give the supervisor a moment to mark it down
        delay = min(delay * 2, 0.1)
        chosen = choose_instance(fleet.instances, invoker.rng, route.variant.routing)
        if chosen is not None:
            instance = chosen


class _IdleWatch:
    """Cancels the consuming task once a single wait for a chunk has lasted ``idle_s``.

    One timer per stream, re-armed from the start of the current wait, instead of an
    ``asyncio.timeout`` per chunk: at tens of thousands of chunks a second, entering a timeout
    for each cost a fifth of the server's time. Time the consumer spends elsewhere (sending to
    a slow client) does not count as idle.
    """

    def __init__(self, idle_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._idle_s = idle_s
        self._since: float | None = None
        self.expired = False
        self._handle = self._loop.call_later(idle_s, self._check)

    def waiting(self) -> None:
        self._since = self._loop.time()

    def received(self) -> None:
        self._since = None

    def claims(self) -> bool:
        """True when a cancellation is this watch's doing (and is then consumed here)."""
        return self.expired and self._task is not None and self._task.uncancel() == 0

    def close(self) -> None:
        self._handle.cancel()

    def _check(self) -> None:
        now = self._loop.time()
        since = self._since
        if since is not None and now - since >= self._idle_s:
            self.expired = True
            assert self._task is not None
            self._task.cancel()
        else:
            start = now if since is None else since
            self._handle = self._loop.call_at(start + self._idle_s, self._check)


async def _rest(
    chunks: AsyncIterator[bytes], idle_s: float, limit_s: float, container: str
) -> AsyncIterator[bytes]:
    watch = _IdleWatch(idle_s)
    try:
        while True:
            watch.waiting()
            try:
                chunk = await anext(chunks, None)
            except asyncio.CancelledError:
                if watch.claims():
                    raise ModelStreamFailed(
                        f"Container {container} sent nothing for {idle_s:g} seconds.",
                        MODEL_INVOCATION_TIME_EXCEEDED,
                    ) from None
                raise
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
            watch.received()
            if chunk is None:
                return
            yield chunk
    finally:
        watch.close()


async def _empty() -> AsyncIterator[bytes]:
    nothing: tuple[bytes, ...] = ()
    for chunk in nothing:
        yield chunk
