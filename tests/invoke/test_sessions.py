"""Stateful sessions (§7.6) through the real Invoker, with fake instances and a fake clock."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from sagehost.core.endpoint_states import EndpointStatus
from sagehost.core.errors import InvalidRequest, NoHealthyInstance
from sagehost.core.invocation import Caller, InvokeInput, InvokeOutput
from sagehost.core.live import EndpointDirectory, LiveContainer, LiveEndpoint, LiveVariant
from sagehost.core.ports import ContainerRequest, ContainerResponse
from sagehost.invoke.service import Invoker
from sagehost.invoke.sessions import NEW_SESSION, SessionTable
from sagehost.testing.fakes import FakeClock, FakeFleet, FakeInstance

ACCOUNT = "111111111111"
CALLER = Caller(ACCOUNT, "us-east-1")
START = 1_800_000_000.0  # FakeClock's start, 2027-01-15T08:00:00Z


def stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Answering(FakeInstance):
    """Answers every call with 200 and the headers its ``answer`` function chooses."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(instance_id)
        self.answer: Callable[[ContainerRequest], Mapping[str, str]] = lambda _: {}

    async def respond(self, request: ContainerRequest) -> ContainerResponse:
        return ContainerResponse(200, dict(self.answer(request)), self.instance_id.encode())


def opens(
    session_id: str, expires: str | None, header: str = "X-Amzn-SageMaker-New-Session-Id"
) -> Callable[[ContainerRequest], Mapping[str, str]]:
    """A container answer that opens ``session_id`` on NEW_SESSION calls."""

    def answer(request: ContainerRequest) -> Mapping[str, str]:
        sent = dict(request.headers).get("X-Amzn-SageMaker-Session-Id")
        if sent != NEW_SESSION:
            return {}
        value = session_id if expires is None else f"{session_id}; Expires={expires}"
        return {header.lower(): value}

    return answer


class World:
    """One endpoint (``ep``) of three instances behind a real Invoker."""

    def __init__(self, **table: Any) -> None:
        self.clock = FakeClock()
        self.directory = EndpointDirectory()
        self.invoker = Invoker(self.directory, self.clock, rng=random.Random(7))
        self.invoker.sessions = SessionTable(self.clock, **table)
        self.instances = [Answering(f"i{n}") for n in range(3)]
        self.variant = LiveVariant("AllTraffic", 1.0, FakeFleet(*self.instances))
        self.endpoint = self.add_endpoint("ep", (self.variant,))

    def add_endpoint(
        self, name: str, variants: tuple[LiveVariant, ...], account: str = ACCOUNT
    ) -> LiveEndpoint:
        endpoint = LiveEndpoint(account, name, "us-east-1", EndpointStatus.IN_SERVICE)
        endpoint.set_variants(variants)
        self.directory.put(endpoint)
        return endpoint

    def call(self, session: str | None = None, **extra: Any) -> InvokeOutput:
        caller = Caller(extra.pop("account", ACCOUNT), "us-east-1")
        request = InvokeInput(extra.pop("endpoint", "ep"), b"{}", session_id=session, **extra)
        return run(self.invoker.invoke(caller, request))

    def open(self, session_id: str = "s-1", ttl_s: float = 600.0) -> InvokeOutput:
        for instance in self.instances:
            instance.answer = opens(session_id, stamp(self.clock.time() + ttl_s))
        return self.call(NEW_SESSION)


def one_instance(instance_id: str, name: str = "AllTraffic") -> LiveVariant:
    return LiveVariant(name, 1.0, FakeFleet(Answering(instance_id)))


def run(awaitable: Awaitable[InvokeOutput]) -> InvokeOutput:
    async def wrapped() -> InvokeOutput:
        return await awaitable

    return asyncio.run(wrapped())


def refused(world: World, session: str, **extra: Any) -> str:
    with pytest.raises(InvalidRequest) as error:
        world.call(session, **extra)
    assert error.value.error_code == "VALIDATION_ERROR"
    return error.value.message


def test_new_session_is_forwarded_as_is_and_its_header_passed_on() -> None:
    world = World()
    output = world.open("s-1", ttl_s=600)
    assert output.new_session_id == f"s-1; Expires={stamp(START + 600)}"
    assert output.closed_session_id is None
    called = [i for i in world.instances if i.calls]
    assert len(called) == 1
    assert dict(called[0].calls[0].headers)["X-Amzn-SageMaker-Session-Id"] == NEW_SESSION
    assert len(world.invoker.sessions) == 1


def test_calls_with_the_session_stick_to_its_instance() -> None:
    world = World()
    holder = world.open("s-1").body.decode()
    for instance in world.instances:
        instance.calls.clear()
    answered = {world.call("s-1").body.decode() for _ in range(50)}
    assert answered == {holder}
    holder_calls = next(i for i in world.instances if i.instance_id == holder).calls
    assert len(holder_calls) == 50
    assert {dict(c.headers)["X-Amzn-SageMaker-Session-Id"] for c in holder_calls} == {"s-1"}
    # Without the session the same endpoint spreads its calls.
    assert len({world.call().body for _ in range(30)}) > 1


def test_unknown_session() -> None:
    world = World()
    assert (
        refused(world, "nope")
        == f"Session nope is not an open session of endpoint ep of account {ACCOUNT}."
    )


def test_expired_session_is_refused_then_forgotten() -> None:
    world = World()
    world.open("s-1", ttl_s=60)
    world.clock.advance(59)
    assert world.call("s-1").invoked_variant == "AllTraffic"
    world.clock.advance(1)
    assert refused(world, "s-1") == (
        f"Session s-1 of endpoint ep of account {ACCOUNT} expired at {stamp(START + 60)}; "
        "open a new one with NEW_SESSION."
    )
    assert refused(world, "s-1").startswith("Session s-1 is not an open session")
    assert len(world.invoker.sessions) == 0


def test_close_forgets_the_session() -> None:
    world = World()
    world.open("s-1")
    for instance in world.instances:
        instance.answer = lambda _: {"x-amzn-sagemaker-closed-session-id": "s-1"}
    output = world.call("s-1")
    assert output.closed_session_id == "s-1"
    assert refused(world, "s-1").startswith("Session s-1 is not an open session")


def test_only_the_holding_instance_can_close_a_session() -> None:
    world = World()
    holder = world.open("s-1").body.decode()
    other = next(i for i in world.instances if i.instance_id != holder)
    other_variant = LiveVariant("Other", 0.0, FakeFleet(other))
    world.endpoint.set_variants((world.variant, other_variant))
    other.answer = lambda _: {"x-amzn-sagemaker-closed-session-id": "s-1"}
    world.call(target_variant="Other")
    assert world.call("s-1").body.decode() == holder


def test_djl_style_header_opens_a_session_only_on_new_session_calls() -> None:
    world = World()
    expires = stamp(START + 300)
    for instance in world.instances:
        instance.answer = lambda r: {"x-amzn-sagemaker-session-id": f"djl-1; Expires={expires}"}
    output = world.call(NEW_SESSION)
    assert output.new_session_id == f"djl-1; Expires={expires}"
    # Echoed on a later call it is not a new session.
    assert world.call("djl-1").new_session_id is None
    assert len(world.invoker.sessions) == 1


def test_without_expires_the_default_ttl_applies() -> None:
    world = World(default_ttl_s=100)
    for instance in world.instances:
        instance.answer = opens("s-1", None)
    assert world.call(NEW_SESSION).new_session_id == "s-1"
    world.clock.advance(99)
    world.call("s-1")
    world.clock.advance(1)
    assert "expired at" in refused(world, "s-1")


def test_sessions_belong_to_their_account_and_endpoint() -> None:
    world = World()
    world.open("s-1")
    world.add_endpoint("other", (one_instance("o"),))
    world.add_endpoint("ep", (one_instance("x"),), account="2")
    assert refused(world, "s-1", endpoint="other") == (
        f"Session s-1 is not an open session of endpoint other of account {ACCOUNT}."
    )
    assert refused(world, "s-1", account="2") == (
        "Session s-1 is not an open session of endpoint ep of account 2."
    )


def test_a_session_whose_instance_stopped_is_refused() -> None:
    world = World()
    world.open("s-1")
    # An update replaced the fleet: the instance holding the session is gone.
    world.endpoint.set_variants((LiveVariant("AllTraffic", 1.0, FakeFleet(Answering("n"))),))
    assert refused(world, "s-1") == (
        f"The instance that held session s-1 of endpoint ep of account {ACCOUNT} has stopped; "
        "open a new session with NEW_SESSION."
    )
    assert refused(world, "s-1").startswith("Session s-1 is not an open session")


def test_a_session_whose_instance_is_unhealthy_answers_service_unavailable() -> None:
    world = World()
    holder = world.open("s-1").body.decode()
    instance = next(i for i in world.instances if i.instance_id == holder)
    instance.ready = False
    with pytest.raises(NoHealthyInstance) as error:
        world.call("s-1")
    assert error.value.message == (
        f"The instance that holds session s-1 of endpoint ep of account {ACCOUNT} is not "
        "healthy right now. Try again later."
    )
    instance.ready = True
    assert world.call("s-1").body.decode() == holder


def test_session_variant_wins_over_weights_but_not_over_target_variant() -> None:
    world = World()
    other = LiveVariant("Other", 1.0, FakeFleet(Answering("o1")))
    world.endpoint.set_variants((world.variant, other))
    for instance in world.instances:
        instance.answer = opens("s-1", stamp(START + 600))
    world.call(NEW_SESSION, target_variant="AllTraffic")
    outputs = [world.call("s-1") for _ in range(20)]
    assert {o.invoked_variant for o in outputs} == {"AllTraffic"}
    assert refused(world, "s-1", target_variant="Other") == (
        f"Session s-1 of endpoint ep of account {ACCOUNT} is served by variant AllTraffic, "
        "not by TargetVariant Other."
    )


def test_multi_container_and_multi_model_variants_refuse_sessions() -> None:
    world = World()
    fleet = FakeFleet(Answering("c"))
    pipeline = LiveVariant(
        "Pipe", 1.0, fleet, containers=(LiveContainer("a", fleet), LiveContainer("b", fleet))
    )
    world.add_endpoint("pipe", (pipeline,))
    assert refused(world, NEW_SESSION, endpoint="pipe") == (
        f"Variant Pipe of endpoint pipe of account {ACCOUNT} serves a multi-container model; "
        "sagehost supports stateful sessions only on single-container models."
    )


def test_a_full_table_refuses_new_sessions_until_one_expires() -> None:
    world = World(max_per_endpoint=2)
    world.open("s-1", ttl_s=10)
    world.open("s-2", ttl_s=100)
    with pytest.raises(NoHealthyInstance) as error:
        world.open("s-3")
    assert error.value.message == (
        f"Endpoint ep of account {ACCOUNT} has 2 open sessions, the most sagehost keeps per "
        "endpoint. Close a session or wait for one to expire, then try again."
    )
    world.clock.advance(10)
    world.open("s-3")
    assert len(world.invoker.sessions) == 2
    assert world.call("s-3").invoked_variant == "AllTraffic"


def test_expired_sessions_of_every_endpoint_are_swept() -> None:
    world = World(sweep_every=3)
    gone = world.add_endpoint(
        "gone", (LiveVariant("AllTraffic", 1.0, FakeFleet(world.instances[0])),)
    )
    world.instances[0].answer = opens("old", stamp(START + 5))
    world.call(NEW_SESSION, endpoint="gone")
    world.directory.remove(ACCOUNT, gone.name)
    world.clock.advance(5)
    world.open("s-1")
    assert len(world.invoker.sessions) == 2
    world.open("s-2")  # the third since the last sweep
    assert len(world.invoker.sessions) == 2  # "old" is swept, s-1 and s-2 stay


def test_a_new_session_header_on_an_ordinary_call_opens_nothing() -> None:
    world = World()
    for instance in world.instances:
        instance.answer = lambda _: {"x-amzn-sagemaker-new-session-id": "s-9"}
    output = world.call()
    assert output.new_session_id is None
    assert len(world.invoker.sessions) == 0
    assert refused(world, "s-9").startswith("Session s-9 is not an open session")


class SlowOpener(FakeInstance):
    """Opens a fresh session on every call, answering only after every call has arrived."""

    def __init__(self, instance_id: str, arrived: asyncio.Event, expected: int) -> None:
        super().__init__(instance_id)
        self.arrived = arrived
        self.expected = expected

    async def respond(self, request: ContainerRequest) -> ContainerResponse:
        number = len(self.calls)
        if number == self.expected:
            self.arrived.set()
        await self.arrived.wait()
        header = f"s-{number}; Expires={stamp(START + 600)}"
        return ContainerResponse(200, {"x-amzn-sagemaker-new-session-id": header}, b"ok")


def test_concurrent_new_sessions_never_exceed_the_cap() -> None:
    clock = FakeClock()
    directory = EndpointDirectory()
    invoker = Invoker(directory, clock)
    invoker.sessions = SessionTable(clock, max_per_endpoint=2)

    async def scenario() -> list[InvokeOutput | BaseException]:
        opener = SlowOpener("i0", asyncio.Event(), expected=5)
        endpoint = LiveEndpoint(ACCOUNT, "ep", "us-east-1", EndpointStatus.IN_SERVICE)
        endpoint.set_variants((LiveVariant("AllTraffic", 1.0, FakeFleet(opener)),))
        directory.put(endpoint)
        calls = (
            invoker.invoke(CALLER, InvokeInput("ep", b"{}", session_id=NEW_SESSION))
            for _ in range(5)
        )
        return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(scenario())
    opened = [r.new_session_id for r in results if isinstance(r, InvokeOutput)]
    # Which two win depends on the order the answers come back in.
    assert len(opened) == 2
    assert all(o is not None and o.endswith(f"; Expires={stamp(START + 600)}") for o in opened)
    refusals = [r for r in results if not isinstance(r, InvokeOutput)]
    assert len(refusals) == 3
    for refusal in refusals:
        assert isinstance(refusal, NoHealthyInstance)
        assert refusal.message == (
            f"Endpoint ep of account {ACCOUNT} has 2 open sessions, the most sagehost keeps "
            "per endpoint. Close a session or wait for one to expire, then try again."
        )
    assert len(invoker.sessions) == 2


@pytest.mark.parametrize("expires", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_an_expiry_outside_utcs_range_falls_back_to_the_default_ttl(expires: str) -> None:
    world = World(default_ttl_s=100)
    for instance in world.instances:
        instance.answer = opens("s-1", expires)
    assert world.call(NEW_SESSION).new_session_id == f"s-1; Expires={expires}"
    world.clock.advance(99)
    assert world.call("s-1").invoked_variant == "AllTraffic"
    world.clock.advance(1)
    assert refused(world, "s-1") == (
        f"Session s-1 of endpoint ep of account {ACCOUNT} expired at {stamp(START + 100)}; "
        "open a new one with NEW_SESSION."
    )
