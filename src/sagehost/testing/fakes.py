"""Fakes of sagehost's ports for tests that drive a service in-process."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Generic, TypeVar

from sagehost.core.errors import NoHealthyInstance
from sagehost.core.ports import ContainerRequest, ContainerResponse, ContainerStream, Instance

Member = TypeVar("Member", bound=Instance)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self._monotonic = 0.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self._monotonic += seconds


class FakeInstance:
    """An ``Instance`` that records every call and answers 200 with its id as the body.

    Tests give it other answers by overriding ``respond``; it is never called as a stream.
    """

    def __init__(self, instance_id: str, *, ready: bool = True) -> None:
        self.instance_id = instance_id
        self.ready = ready
        self.outstanding = 0
        self.base_url: str | None = None
        self.calls: list[ContainerRequest] = []

    async def invoke(self, request: ContainerRequest) -> ContainerResponse:
        self.calls.append(request)
        return await self.respond(request)

    async def respond(self, request: ContainerRequest) -> ContainerResponse:
        return ContainerResponse(200, {}, self.instance_id.encode())

    def invoke_stream(
        self, request: ContainerRequest
    ) -> AbstractAsyncContextManager[ContainerStream]:
        raise AssertionError(f"{self.instance_id} is not called as a stream here")


class FakeFleet(Generic[Member]):
    """A ``Fleet`` of the given instances, always ready; it only records that it stopped."""

    def __init__(self, *instances: Member) -> None:
        self.instances: list[Member] = list(instances)
        self.stopped = False

    async def wait_ready(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    async def scale(self, count: int) -> None:
        pass


class RecordingNotifier:
    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []

    async def publish(self, topic: str, message: str) -> None:
        self.published.append((topic, message))


class NoInstances:
    """``EndpointModels`` for an endpoint whose instances are all down."""

    def capacity(self, account: str, endpoint_name: str) -> int:
        return 0

    def call(
        self,
        account: str,
        endpoint_name: str,
        body: bytes | bytearray | AsyncIterable[bytes],
        headers: Sequence[tuple[str, str]],
        timeout_s: float,
        *,
        body_length: int | None = None,
    ) -> AbstractAsyncContextManager[ContainerStream]:
        return self._refuse(endpoint_name)

    @asynccontextmanager
    async def _refuse(self, endpoint_name: str) -> AsyncIterator[ContainerStream]:
        if endpoint_name:
            raise NoHealthyInstance(f"{endpoint_name} has no instance")
        yield ContainerStream(503, {}, _nothing())


async def _nothing() -> AsyncIterator[bytes]:
    nothing: tuple[bytes, ...] = ()
    for chunk in nothing:
        yield chunk
