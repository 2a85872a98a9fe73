"""The copies of an inference component: one fleet, started through the ``Deployer``,
published as a ``LiveComponent`` and resized in place with ``Fleet.scale``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from sagehost.control.component_specs import first_spec
from sagehost.control.deployer import Deployer
from sagehost.core.errors import DeploymentFailed
from sagehost.core.live import LiveComponent
from sagehost.core.ports import Fleet, Instance


class ComponentCopies:
    """A component's fleet as the routing table holds it (implements ``core.ports.Fleet``).

    ``scale`` is how the invoke path asks for copies of a component that has none: it goes
    through ``resize``, the component service, so the record and its status follow. The
    control plane itself resizes ``inner``.
    """

    def __init__(self, fleet: Fleet, resize: Callable[[int], Awaitable[None]]) -> None:
        self.inner = fleet
        self._resize = resize

    @property
    def instances(self) -> Sequence[Instance]:
        return self.inner.instances

    async def wait_ready(self) -> None:
        await self.inner.wait_ready()

    async def stop(self) -> None:
        await self.inner.stop()

    async def scale(self, count: int) -> None:
        """Ask for ``count`` copies as UpdateInferenceComponentRuntimeConfig would; ignored
        while another change of the component is in progress."""
        await self._resize(count)


async def launch_copies(
    deployer: Deployer,
    key: str,
    record: dict[str, Any],
    host: dict[str, Any] | None,
    model: dict[str, Any],
    copies: int,
    resize: Callable[[int], Awaitable[None]],
) -> LiveComponent:
    """Start ``copies`` copies of ``model`` for the component ``record`` without waiting for
    them. They take the routing strategy of the variant of ``host`` (the endpoint record) that
    holds them and the start-up parameters of the component's specification."""
    routing: dict[str, Any] = {}
    for variant in (host or {}).get("_config", {}).get("ProductionVariants", []):
        if variant["VariantName"] == record["VariantName"] and "RoutingConfig" in variant:
            routing = {"RoutingConfig": variant["RoutingConfig"]}
    fleet_variant = {
        "VariantName": record["VariantName"],
        # Deployer.fleet_spec reads a count of 0 as 1, so a component at 0 shrinks at once,
        # before its copy has been spawned.
        "InitialInstanceCount": max(copies, 1),
        **(first_spec(record).get("StartupParameters") or {}),
        **routing,
    }
    serving = await deployer.launch(key, fleet_variant, model)
    if copies == 0:
        await serving.fleet.scale(0)
    published = replace(serving, fleet=ComponentCopies(serving.fleet, resize))
    return LiveComponent(record["InferenceComponentName"], record["VariantName"], published)


async def resize_copies(live: LiveComponent, count: int, previous: int) -> None:
    """Grow or shrink the copies in place and wait until they are ready. If a new copy cannot
    start, go back to ``previous`` copies (those not ready go first) and raise."""
    fleet = inner_fleet(live)
    await fleet.scale(count)
    try:
        await fleet.wait_ready()
    except DeploymentFailed:
        await fleet.scale(previous)
        raise


def inner_fleet(live: LiveComponent) -> Fleet:
    fleet = live.serving.fleet
    return fleet.inner if isinstance(fleet, ComponentCopies) else fleet


def ready_copies(live: LiveComponent | None) -> int:
    return 0 if live is None else sum(1 for i in live.serving.fleet.instances if i.ready)
