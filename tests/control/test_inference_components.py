"""The inference-component service in process, with fleets that never run a process: races
between a component's bring-up and its deletion."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sagehost.control.context import Store
from sagehost.control.deployer import Deployer, DeploySettings
from sagehost.control.inference_components import InferenceComponents
from sagehost.core.endpoint_states import EndpointStatus
from sagehost.core.invocation import Caller
from sagehost.core.live import EndpointDirectory, LiveEndpoint
from sagehost.core.ports import FleetSpec
from sagehost.core.resources import Kind
from sagehost.storage.catalog import SqliteCatalog
from sagehost.testing.fakes import FakeClock, FakeFleet, FakeInstance

CALLER = Caller("123456789012", "us-east-1")


class GatedPool:
    """A ``WorkerPool`` whose launches wait until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.waiting = 0
        self.fleets: list[FakeFleet[FakeInstance]] = []

    async def launch(self, spec: FleetSpec) -> FakeFleet[FakeInstance]:
        self.waiting += 1
        await self.gate.wait()
        fleet = FakeFleet(*(FakeInstance(f"{spec.key}-{i}") for i in range(spec.instance_count)))
        self.fleets.append(fleet)
        return fleet

    async def shutdown(self) -> None:
        for fleet in self.fleets:
            await fleet.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    catalog = SqliteCatalog(tmp_path / "catalog.sqlite3")
    yield Store(catalog, FakeClock())
    catalog.close()


async def until(condition: Any) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while not condition():
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0.005)


def service(store: Store, pool: GatedPool) -> tuple[InferenceComponents, LiveEndpoint]:
    store.create(
        CALLER,
        Kind.ENDPOINT,
        "ep",
        {
            "EndpointName": "ep",
            "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep",
            "EndpointStatus": "InService",
            "_config": {"ProductionVariants": [{"VariantName": "v"}]},
        },
    )
    directory = EndpointDirectory()
    live = LiveEndpoint(
        CALLER.account, "ep", "us-east-1", EndpointStatus.IN_SERVICE, component_based=True
    )
    directory.put(live)
    deployer = Deployer(pool, DeploySettings())
    return InferenceComponents(store, directory, deployer, settle_s=0), live


@pytest.mark.parametrize("copies", [0, 1])
def test_a_component_deleted_while_its_copies_start_is_never_published(
    store: Store, copies: int
) -> None:
    async def scenario() -> None:
        pool = GatedPool()
        components, endpoint = service(store, pool)
        params = {
            "InferenceComponentName": "ic",
            "EndpointName": "ep",
            "Specification": {"Container": {"Image": "process:x"}},
            "RuntimeConfig": {"CopyCount": copies},
        }
        create = asyncio.ensure_future(components.create(CALLER, params))
        await until(lambda: pool.waiting == 1)
        assert await components.delete(CALLER, {"InferenceComponentName": "ic"}) == {}
        pool.gate.set()
        await create
        await until(lambda: store.find(CALLER, Kind.INFERENCE_COMPONENT, "ic") is None)
        assert endpoint.components == {}
        (fleet,) = pool.fleets
        assert fleet.stopped is True
        await components.shutdown()

    asyncio.run(scenario())
