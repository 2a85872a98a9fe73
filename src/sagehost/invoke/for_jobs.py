"""The :class:`~sagehost.core.ports.EndpointModels` the async job runner calls models through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace

from sagehost.core.errors import EndpointNotFound, InvalidRequest
from sagehost.core.invocation import InvokeInput
from sagehost.core.live import EndpointDirectory
from sagehost.core.ports import ContainerRequest, ContainerStream
from sagehost.invoke.pipelines import feed_last, pick_instance
from sagehost.invoke.service import Invoker

# An async input may be 1 GB; a Serial pipeline holds it and each container's answer in memory.
MAX_PIPELINE_BYTES = 1 << 30


class EndpointModels:
    def __init__(self, directory: EndpointDirectory, invoker: Invoker) -> None:
        self._directory = directory
        self._invoker = invoker

    def capacity(self, account: str, endpoint_name: str) -> int:
        endpoint = self._directory.get(account, endpoint_name)
        if endpoint is None:
            return 0
        return sum(1 for v in endpoint.variants for f in v.fleets() for i in f.instances if i.ready)

    @asynccontextmanager
    async def call(
        self,
        account: str,
        endpoint_name: str,
        body: bytes | bytearray | AsyncIterable[bytes],
        headers: Sequence[tuple[str, str]],
        timeout_s: float,
        *,
        body_length: int | None = None,
    ) -> AsyncIterator[ContainerStream]:
        endpoint = self._directory.get(account, endpoint_name)
        if endpoint is None:
            raise EndpointNotFound(endpoint_name, account)
        named = {name.lower(): value for name, value in headers}
        request = InvokeInput(
            endpoint.name,
            b"",
            content_type=named.get("content-type"),
            accept=named.get("accept"),
        )
        if any(variant.direct for variant in endpoint.variants):
            raise InvalidRequest(
                f"Endpoint {endpoint.name} invokes its containers in Direct mode, and "
                "InvokeEndpointAsync cannot name a TargetContainerHostname."
            )
        route = await self._invoker.route_to(endpoint, request)
        variant = route.variant
        if not variant.containers:
            instance = await self._invoker.pick(route)
            call = ContainerRequest(
                body=body, headers=list(headers), timeout_s=timeout_s, body_length=body_length
            )
            async with instance.invoke_stream(call) as stream:
                yield stream
            return
        # A Serial pipeline: every container but the last answers whole, the last streams.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        whole = body if isinstance(body, bytes | bytearray) else await _read_all(body)
        call = ContainerRequest(
            body=bytes(whole),
            headers=list(headers),
            timeout_s=timeout_s,
            max_response_bytes=MAX_PIPELINE_BYTES,
        )
        last, last_call = await feed_last(self._invoker, route, request, call, deadline)
        instance = await pick_instance(self._invoker, route, last, deadline)
        remaining = max(deadline - loop.time(), 0.001)
        async with instance.invoke_stream(replace(last_call, timeout_s=remaining)) as stream:
            yield stream


async def _read_all(chunks: AsyncIterable[bytes]) -> bytes:
    parts = [chunk async for chunk in chunks]
    return b"".join(parts)
