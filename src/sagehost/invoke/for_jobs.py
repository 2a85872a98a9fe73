"""The :class:`~sagehost.core.ports.EndpointModels` the async job runner calls models through."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import asynccontextmanager

from sagehost.core.errors import EndpointNotFound
from sagehost.core.invocation import InvokeInput
from sagehost.core.live import EndpointDirectory
from sagehost.core.ports import ContainerRequest, ContainerStream
from sagehost.invoke.service import Invoker


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
        route = await self._invoker.route_to(endpoint, InvokeInput(endpoint.name, b""))
        instance = await self._invoker.pick(route)
        request = ContainerRequest(
            body=body, headers=list(headers), timeout_s=timeout_s, body_length=body_length
        )
        async with instance.invoke_stream(request) as stream:
            yield stream
