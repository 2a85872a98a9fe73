"""Multi-container models (§7.4): serial inference pipelines and Direct invocation.

Each container of such a model runs as a fleet of its own. A Serial call goes through the
containers in order: each 2xx answer's body becomes the next container's request body, sent
with the answer's Content-Type, and the last answer is the caller's. Every container hears the
caller's other forwarded headers; what intermediate containers get as ``Accept`` is the
endpoint's ``pipeline_accept`` (the ``sagehost:pipeline-accept`` config tag). The whole
pipeline shares one invocation deadline, and a failure anywhere is a ModelFailed naming that
container. A Direct call goes to the one container TargetContainerHostname names.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING

from sagehost.core.errors import ContainerRefused, NoHealthyInstance
from sagehost.core.invocation import InvokeInput
from sagehost.core.live import LiveContainer, LiveEndpoint
from sagehost.core.ports import ContainerRequest, ContainerResponse, Instance
from sagehost.invoke.routing import Route, choose_instance

if TYPE_CHECKING:
    from sagehost.invoke.service import Invoker

_REPLACED = frozenset({"content-type", "accept"})


async def call_containers(
    invoker: Invoker, route: Route, request: InvokeInput, call: ContainerRequest
) -> ContainerResponse:
    """Call a multi-container variant: its pipeline in order, or the container named by
    TargetContainerHostname in Direct mode. ``call.timeout_s`` bounds the whole call."""
    deadline = _now() + call.timeout_s
    last, final = await feed_last(invoker, route, request, call, deadline)
    return await call_container(invoker, route, last, final, deadline)


async def feed_last(
    invoker: Invoker, route: Route, request: InvokeInput, call: ContainerRequest, deadline: float
) -> tuple[LiveContainer, ContainerRequest]:
    """The container whose answer is the caller's (called, streamed, or an async job's
    result), and its request.

    In Serial mode every container but the last is called first (their answers buffered), by
    ``deadline`` on the event loop's clock; in Direct mode the named container gets ``call``.
    """
    variant = route.variant
    if variant.direct:
        return named(route, request), call
    *inner, last = variant.containers
    body, content_type = await _run(invoker, route, request, call, inner, deadline)
    return last, stage_request(call, request, route.endpoint, body, content_type, last=True)


def named(route: Route, request: InvokeInput) -> LiveContainer:
    """The container TargetContainerHostname names (``check_targets`` made sure it exists)."""
    hostname = request.target_container_hostname
    return next(c for c in route.variant.containers if c.hostname == hostname)


def stage_request(
    call: ContainerRequest,
    request: InvokeInput,
    endpoint: LiveEndpoint,
    body: bytes,
    content_type: str | None,
    *,
    last: bool,
) -> ContainerRequest:
    """The request for one container of a Serial pipeline: the caller's forwarded headers,
    with the Content-Type of the body it gets and the Accept its position calls for."""
    headers = [(name, value) for name, value in call.headers if name.lower() not in _REPLACED]
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    accept = (
        request.accept if last or endpoint.pipeline_accept is None else endpoint.pipeline_accept
    )
    if accept:
        headers.append(("Accept", accept))
    return replace(call, body=body, headers=headers)


async def call_container(
    invoker: Invoker,
    route: Route,
    container: LiveContainer,
    call: ContainerRequest,
    deadline: float,
) -> ContainerResponse:
    """Call one container of the variant by ``deadline`` and judge its answer. An instance
    that refuses the connection never saw the call, so it goes to another."""

    async def attempt() -> ContainerResponse:
        delay = 0.005
        while True:
            instance = await pick_instance(invoker, route, container, deadline)
            # A container reached after the deadline passed still gets a moment, so the
            # failure reads as that container's timeout rather than as a call never made.
            remaining = max(deadline - _now(), 0.001)
            try:
                return await instance.invoke(replace(call, timeout_s=remaining))
            except ContainerRefused:
                if _now() >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    return await invoker.guard(route, container.hostname, attempt())


async def pick_instance(
    invoker: Invoker, route: Route, container: LiveContainer, deadline: float
) -> Instance:
    """A ready instance of ``container``'s fleet, as the variant's routing strategy picks it;
    while none is ready, wait for one (as for a single container) but not past ``deadline``."""
    strategy = route.variant.routing
    instance = choose_instance(container.fleet.instances, invoker.rng, strategy)
    if instance is not None:
        return instance
    give_up = min(deadline, _now() + invoker.instance_wait_s)
    delay = 0.01
    while _now() < give_up:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
        instance = choose_instance(container.fleet.instances, invoker.rng, strategy)
        if instance is not None:
            return instance
    raise NoHealthyInstance(
        f"Container {container.hostname} of endpoint {route.endpoint.name} has no healthy "
        "instance to serve the request. Try again later."
    )


async def _run(
    invoker: Invoker,
    route: Route,
    request: InvokeInput,
    call: ContainerRequest,
    containers: list[LiveContainer],
    deadline: float,
) -> tuple[bytes, str | None]:
    """Pass the caller's body through ``containers`` in order; returns the last answer's
    body and Content-Type."""
    body = call.body
    assert isinstance(body, bytes | bytearray)  # real-time bodies are whole
    content_type = request.content_type
    for container in containers:
        stage = stage_request(call, request, route.endpoint, bytes(body), content_type, last=False)
        reply = await call_container(invoker, route, container, stage, deadline)
        body, content_type = reply.body, reply.headers.get("content-type")
    return bytes(body), content_type


def _now() -> float:
    return asyncio.get_running_loop().time()
