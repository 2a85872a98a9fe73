"""Instances run by another process: a gateway replica calls the primary's containers directly.

A refused connection means the instance is gone (the primary restarts or retires it, and the
replica's copy of the table has not caught up yet): the instance stops taking this replica's
calls, and the call is handed to the primary (``Handoff``), which never sent it anywhere.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from sagehost.core.errors import ContainerRefused, Handoff
from sagehost.core.ports import ContainerRequest, ContainerResponse, ContainerStream
from sagehost.workers.client import ContainerClient


class RemoteInstance:
    """Implements ``core.ports.Instance`` for a container listening at ``base_url``."""

    __slots__ = ("_client", "_id", "_url", "outstanding", "ready")

    def __init__(self, instance_id: str, base_url: str, client: ContainerClient) -> None:
        self._id = instance_id
        self._url = base_url
        self._client = client
        self.ready = True
        self.outstanding = 0

    @property
    def instance_id(self) -> str:
        return self._id

    @property
    def base_url(self) -> str:
        return self._url

    async def invoke(self, request: ContainerRequest) -> ContainerResponse:
        self.outstanding += 1
        try:
            return await self._client.invoke(self._url, request)
        except ContainerRefused:
            self.ready = False
            raise Handoff from None
        finally:
            self.outstanding -= 1

    def invoke_stream(
        self, request: ContainerRequest
    ) -> AbstractAsyncContextManager[ContainerStream]:
        raise Handoff  # a replica relays every stream to the primary
