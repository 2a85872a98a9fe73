"""Multi-container models on the control side: their rules, the pipeline tag, their fleets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sagehost.control.deployer import Deployer, DeploySettings
from sagehost.control.endpoint_configs import pipeline_accept
from sagehost.control.multi_container import check_containers, hostnames, is_multi_container
from sagehost.core.errors import DeploymentFailed, InvalidRequest
from sagehost.core.live import LiveVariant
from sagehost.core.ports import FleetSpec, Instance
from sagehost.testing.fakes import FakeFleet


def container(hostname: str | None = None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"Image": "sagehost/python", **extra}
    if hostname is not None:
        spec["ContainerHostname"] = hostname
    return spec


def model(*containers: dict[str, Any], mode: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"ModelName": "m", "Containers": list(containers)}
    if mode is not None:
        record["InferenceExecutionConfig"] = {"Mode": mode}
    return record


class LaunchedFleet(FakeFleet[Instance]):
    """A fleet the pool launched, with the spec it was launched from."""

    def __init__(self, spec: FleetSpec) -> None:
        super().__init__()
        self.spec = spec


class FakePool:
    def __init__(self, fail_on: str | None = None) -> None:
        self.fleets: list[LaunchedFleet] = []
        self.fail_on = fail_on

    async def launch(self, spec: FleetSpec) -> LaunchedFleet:
        if spec.container.hostname == self.fail_on:
            raise DeploymentFailed(f"cannot launch {spec.container.hostname}")
        fleet = LaunchedFleet(spec)
        self.fleets.append(fleet)
        return fleet

    async def shutdown(self) -> None:
        pass


VARIANT = {"VariantName": "AllTraffic", "InitialInstanceCount": 2, "InitialVariantWeight": 1.0}


def launch(pool: FakePool, record: dict[str, Any]) -> LiveVariant:
    deployer = Deployer(pool, DeploySettings())
    return asyncio.run(deployer.launch("acct-ep-g1-alltraffic", VARIANT, record))


def test_a_serial_pipeline_runs_one_fleet_per_container() -> None:
    pool = FakePool()
    variant = launch(pool, model(container(Environment={"A": "1"}), container(), container()))
    assert [c.hostname for c in variant.containers] == ["container-1", "container-2", "container-3"]
    assert [f.spec.key for f in pool.fleets] == [
        "acct-ep-g1-alltraffic.container-1",
        "acct-ep-g1-alltraffic.container-2",
        "acct-ep-g1-alltraffic.container-3",
    ]
    assert [f.spec.instance_count for f in pool.fleets] == [2, 2, 2]
    assert pool.fleets[0].spec.container.environment == {"A": "1"}
    assert variant.fleet is pool.fleets[0]
    assert variant.container == "container-1"
    assert [c.fleet for c in variant.containers] == pool.fleets
    assert variant.direct is False
    assert variant.fleets() == tuple(pool.fleets)


def test_direct_mode_keeps_the_named_hostnames() -> None:
    pool = FakePool()
    variant = launch(pool, model(container("Pre"), container("post"), mode="Direct"))
    assert variant.direct is True
    assert [c.hostname for c in variant.containers] == ["Pre", "post"]
    assert [f.spec.container.hostname for f in pool.fleets] == ["Pre", "post"]
    assert pool.fleets[0].spec.key == "acct-ep-g1-alltraffic.pre"


def test_a_direct_model_of_one_container_is_still_multi_container() -> None:
    assert is_multi_container(model(container("only"), mode="Direct"))
    assert not is_multi_container(model(container("only")))
    assert not is_multi_container({"ModelName": "m", "PrimaryContainer": container()})


def test_fleets_already_launched_are_stopped_when_one_cannot_be() -> None:
    pool = FakePool(fail_on="c")
    with pytest.raises(DeploymentFailed, match="cannot launch c"):
        launch(pool, model(container("a"), container("b"), container("c")))
    assert [f.stopped for f in pool.fleets] == [True, True]


def test_a_stored_model_that_breaks_the_rules_fails_the_deployment() -> None:
    with pytest.raises(DeploymentFailed) as error:
        launch(FakePool(), model(container("a"), container(), mode="Direct"))
    assert error.value.message == (
        "Model m invokes its containers in Direct mode, so every container needs a "
        "ContainerHostname."
    )


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (
            model(*[container() for _ in range(16)]),
            "Model m has 16 containers; a model may have at most 15.",
        ),
        (
            model(container("a"), mode="Parallel"),
            "InferenceExecutionConfig.Mode of model m must be Serial or Direct, not Parallel.",
        ),
        (
            model(container("a"), container(), mode="Direct"),
            "Model m invokes its containers in Direct mode, so every container needs a "
            "ContainerHostname.",
        ),
        (
            model(container("a"), container()),
            "Either every container of model m has a ContainerHostname or none does.",
        ),
        (
            model(container("web"), container("WEB")),
            "ContainerHostname WEB names more than one container of model m.",
        ),
        (
            model(container(Mode="MultiModel"), container(Mode="MultiModel")),
            "Model m has 2 containers in MultiModel mode; a multi-container model may have at "
            "most one.",
        ),
        (
            model(container(Mode="MultiModel"), container()),
            "Model m has a container in MultiModel mode among others; sagehost does not "
            "support multi-model containers in a multi-container model yet. Deploy it as a "
            "model of its own.",
        ),
    ],
)
def test_check_containers_refuses(record: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        check_containers(record)
    assert error.value.message == message


def test_check_containers_accepts() -> None:
    check_containers(model(container(), container()))
    check_containers(model(container("a"), container("b"), mode="Direct"))
    check_containers(model(container(Mode="MultiModel")))
    check_containers({"ModelName": "m", "PrimaryContainer": container()})
    assert hostnames(model(container(), container())) == ["container-1", "container-2"]


@pytest.mark.parametrize(
    ("value", "policy"),
    [
        ("client", None),
        ("none", ""),
        ("text/csv", "text/csv"),
        (" application/x-npy ", "application/x-npy"),
    ],
)
def test_pipeline_accept_tag(value: str, policy: str | None) -> None:
    tags = [{"Key": "other", "Value": "x"}, {"Key": "sagehost:pipeline-accept", "Value": value}]
    assert pipeline_accept(tags) == policy


def test_pipeline_accept_tag_defaults_to_the_client_and_refuses_junk() -> None:
    assert pipeline_accept([]) is None
    with pytest.raises(InvalidRequest) as error:
        pipeline_accept([{"Key": "sagehost:pipeline-accept", "Value": "csv"}])
    assert error.value.message == (
        'Tag sagehost:pipeline-accept must be "client", "none" or a media type such as '
        '"text/csv", not "csv".'
    )
