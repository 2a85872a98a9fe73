"""Opening a response stream through the real Invoker and ``open_stream``, with fake
instances: a refused connection goes to another instance, except for a session's."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest

from sagehost.core.endpoint_states import EndpointStatus
from sagehost.core.errors import ContainerRefused, ModelFailed
from sagehost.core.invocation import Caller, InvokeInput
from sagehost.core.live import EndpointDirectory, LiveEndpoint, LiveVariant
from sagehost.core.ports import ContainerRequest, ContainerResponse, ContainerStream
from sagehost.invoke.service import Invoker
from sagehost.invoke.sessions import NEW_SESSION
from sagehost.invoke.streams import open_stream
from sagehost.testing.fakes import FakeClock, FakeFleet, FakeInstance

ACCOUNT = "111111111111"
CALLER = Caller(ACCOUNT, "us-east-1")


class Streaming(FakeInstance):
    """Streams its id in two chunks; once ``dead``, refuses every connection and, as a real
    instance does after a refusal, stops counting as ready only when ``marks_down``."""

    def __init__(self, instance_id: str, *, dead: bool = False, marks_down: bool = True) -> None:
        super().__init__(instance_id)
        self.dead = dead
        self.marks_down = marks_down
        self.streams: list[ContainerRequest] = []
        self.refusals = 0

    async def respond(self, request: ContainerRequest) -> ContainerResponse:
        expires = datetime.fromtimestamp(1_800_000_600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = {"x-amzn-sagemaker-new-session-id": f"s-1; Expires={expires}"}
        return ContainerResponse(200, headers, self.instance_id.encode())

    @asynccontextmanager
    async def invoke_stream(self, request: ContainerRequest) -> AsyncIterator[ContainerStream]:
        if self.dead:
            self.refusals += 1
            if self.marks_down:
                self.ready = False
            raise ContainerRefused(f"{self.instance_id} refused the connection")
        self.streams.append(request)
        yield ContainerStream(200, {"content-type": "text/plain"}, self._chunks())

    async def _chunks(self) -> AsyncIterator[bytes]:
        for chunk in (self.instance_id.encode(), b"-done"):
            yield chunk


def world(
    *instances: Streaming, fleet: FakeFleet[Streaming] | None = None, wait_s: float = 10.0
) -> Invoker:
    directory = EndpointDirectory()
    endpoint = LiveEndpoint(ACCOUNT, "ep", "us-east-1", EndpointStatus.IN_SERVICE)
    fleet = fleet or FakeFleet(*instances)
    endpoint.set_variants((LiveVariant("AllTraffic", 1.0, fleet),))
    directory.put(endpoint)
    return Invoker(directory, FakeClock(), instance_wait_s=wait_s, rng=random.Random(3))


async def read(invoker: Invoker, session: str | None = None) -> bytes:
    request = InvokeInput("ep", b"{}", session_id=session)
    async with open_stream(invoker, CALLER, request, stream_limit_s=30) as output:
        assert output.first is not None
        return output.first + b"".join([chunk async for chunk in output.rest])


def test_a_refused_stream_goes_to_another_ready_instance() -> None:
    dead, alive = Streaming("dead", dead=True), Streaming("alive")
    invoker = world(dead, alive)

    async def scenario() -> list[bytes]:
        # The dead instance is still marked ready, so it is chosen whenever it is idle.
        return [await read(invoker) for _ in range(10)]

    assert asyncio.run(scenario()) == [b"alive-done"] * 10
    assert dead.refusals == 1  # then it is marked down and no longer chosen
    assert len(alive.streams) == 10


def test_refusals_until_the_instance_wait_runs_out_are_a_model_error() -> None:
    dead = Streaming("dead", dead=True, marks_down=False)
    invoker = world(dead, wait_s=0.05)
    with pytest.raises(ModelFailed) as error:
        asyncio.run(read(invoker))
    assert error.value.status == 0
    assert error.value.original_message == "dead refused the connection"
    assert dead.refusals > 1  # it was tried again within the wait


def test_a_session_pinned_stream_is_not_moved_when_refused() -> None:
    holder, other = Streaming("holder"), Streaming("other")
    fleet = FakeFleet(holder)
    invoker = world(fleet=fleet)

    async def scenario() -> None:
        opened = await invoker.invoke(CALLER, InvokeInput("ep", b"{}", session_id=NEW_SESSION))
        assert opened.new_session_id is not None
        fleet.instances.append(other)  # a ready instance the call could move to
        holder.dead = True
        holder.marks_down = False
        await read(invoker, "s-1")

    with pytest.raises(ModelFailed) as error:
        asyncio.run(scenario())
    assert error.value.status == 0
    assert error.value.original_message == "holder refused the connection"
    assert holder.refusals == 1
    assert other.streams == []
