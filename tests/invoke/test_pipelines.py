"""Multi-container calls (§7.4) through the real Invoker, with fake instances."""

from __future__ import annotations

import asyncio
import random

import pytest

from sagehost.core.endpoint_states import EndpointStatus
from sagehost.core.errors import ContainerRefused, ModelFailed, NoHealthyInstance
from sagehost.core.invocation import Caller, InvokeInput, InvokeOutput
from sagehost.core.live import EndpointDirectory, LiveContainer, LiveEndpoint, LiveVariant
from sagehost.core.ports import ContainerRequest, ContainerResponse
from sagehost.invoke.pipelines import stage_request
from sagehost.invoke.service import Invoker
from sagehost.testing.fakes import FakeClock, FakeFleet, FakeInstance

CALLER = Caller("000000000000", "us-east-1")


class Stage(FakeInstance):
    """An instance that appends its name to the body and answers with its own type."""

    def __init__(self, name: str, *, refuse: bool = False, status: int = 200) -> None:
        super().__init__(name)
        self.refuse = refuse
        self.status = status

    async def respond(self, request: ContainerRequest) -> ContainerResponse:
        if self.refuse:
            self.ready = False  # as a real instance marks itself after a refused call
            raise ContainerRefused(f"{self.instance_id} refused")
        assert isinstance(request.body, bytes)
        body = request.body + f"|{self.instance_id}".encode()
        return ContainerResponse(self.status, {"content-type": f"x/{self.instance_id}"}, body)


def endpoint_of(
    containers: dict[str, FakeFleet[Stage]], *, direct: bool = False, accept: str | None = None
) -> tuple[Invoker, LiveEndpoint]:
    directory = EndpointDirectory()
    live = tuple(LiveContainer(hostname, fleet) for hostname, fleet in containers.items())
    variant = LiveVariant(
        "AllTraffic", 1.0, live[0].fleet, live[0].hostname, containers=live, direct=direct
    )
    endpoint = LiveEndpoint(CALLER.account, "pipe", "us-east-1", EndpointStatus.IN_SERVICE)
    endpoint.pipeline_accept = accept
    endpoint.set_variants((variant,))
    directory.put(endpoint)
    invoker = Invoker(directory, FakeClock(), instance_wait_s=0.05, rng=random.Random(1))
    return invoker, endpoint


def invoke(invoker: Invoker, **fields: str) -> InvokeOutput:
    request = InvokeInput("pipe", b"in", content_type="x/client", accept="x/want", **fields)
    return asyncio.run(invoker.invoke(CALLER, request))


def test_serial_chains_bodies_and_content_types() -> None:
    a, b, c = Stage("a"), Stage("b"), Stage("c")
    invoker, _ = endpoint_of({"a": FakeFleet(a), "b": FakeFleet(b), "c": FakeFleet(c)})
    output = invoke(invoker, custom_attributes="k=v")
    assert output.body == b"in|a|b|c"
    assert output.content_type == "x/c"
    sent = [dict(s.calls[0].headers) for s in (a, b, c)]
    assert [h["Content-Type"] for h in sent] == ["x/client", "x/a", "x/b"]
    assert [h["Accept"] for h in sent] == ["x/want"] * 3
    assert [h["X-Amzn-SageMaker-Custom-Attributes"] for h in sent] == ["k=v"] * 3


@pytest.mark.parametrize(("policy", "inner"), [("", None), ("text/csv", "text/csv")])
def test_intermediate_accept_follows_the_endpoint_policy(policy: str, inner: str | None) -> None:
    a, b = Stage("a"), Stage("b")
    invoker, _ = endpoint_of({"a": FakeFleet(a), "b": FakeFleet(b)}, accept=policy)
    invoke(invoker)
    assert dict(a.calls[0].headers).get("Accept") == inner
    assert dict(b.calls[0].headers)["Accept"] == "x/want"


def test_stage_request_keeps_other_headers_and_drops_a_missing_type() -> None:
    endpoint = LiveEndpoint("1", "e", "r", EndpointStatus.IN_SERVICE)
    call = ContainerRequest(
        body=b"x",
        headers=[
            ("Content-Type", "a/b"),
            ("Accept", "c/d"),
            ("X-Amzn-SageMaker-Inference-Id", "i"),
        ],
        timeout_s=5,
    )
    request = InvokeInput("e", b"x", accept="c/d")
    stage = stage_request(call, request, endpoint, b"y", None, last=True)
    assert stage.body == b"y"
    assert list(stage.headers) == [("X-Amzn-SageMaker-Inference-Id", "i"), ("Accept", "c/d")]
    assert stage.timeout_s == 5


def test_direct_calls_only_the_named_container() -> None:
    a, b = Stage("a"), Stage("b")
    invoker, _ = endpoint_of({"a": FakeFleet(a), "b": FakeFleet(b)}, direct=True)
    output = invoke(invoker, target_container_hostname="b")
    assert output.body == b"in|b"
    assert a.calls == []
    assert dict(b.calls[0].headers)["Content-Type"] == "x/client"


def test_a_refused_connection_goes_to_another_instance_of_the_container() -> None:
    dead, alive = Stage("b0", refuse=True), Stage("b1")
    alive.outstanding = 1  # the dead one looks less busy, so it is tried first
    invoker, _ = endpoint_of({"a": FakeFleet(Stage("a")), "b": FakeFleet(dead, alive)})
    assert invoke(invoker).body == b"in|a|b1"
    assert len(dead.calls) == 1


def test_a_failing_container_is_named() -> None:
    invoker, _ = endpoint_of(
        {"a": FakeFleet(Stage("a")), "second": FakeFleet(Stage("s", status=502))}
    )
    with pytest.raises(ModelFailed) as error:
        invoke(invoker)
    assert error.value.container == "second"
    assert error.value.status == 502
    assert error.value.message.startswith(
        'Received server error (502) from second with message "in|a|s".'
    )


def test_a_container_without_a_ready_instance_answers_service_unavailable() -> None:
    down = Stage("b")
    down.ready = False
    invoker, _ = endpoint_of({"a": FakeFleet(Stage("a")), "b": FakeFleet(down)})
    with pytest.raises(NoHealthyInstance) as error:
        invoke(invoker)
    assert error.value.message == (
        "Container b of endpoint pipe has no healthy instance to serve the request. "
        "Try again later."
    )
