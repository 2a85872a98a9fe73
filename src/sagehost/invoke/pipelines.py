"""Multi-container models (§7.4): serial inference pipelines and Direct invocation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sagehost.core.errors import InvalidRequest
from sagehost.core.invocation import InvokeInput
from sagehost.core.ports import ContainerRequest, ContainerResponse
from sagehost.invoke.routing import Route

if TYPE_CHECKING:
    from sagehost.invoke.service import Invoker


async def call_containers(
    invoker: Invoker, route: Route, request: InvokeInput, call: ContainerRequest
) -> ContainerResponse:
    """Call a multi-container variant: its pipeline in order, or the container named by
    TargetContainerHostname in Direct mode."""
    raise InvalidRequest(
        f"Endpoint {route.endpoint.name} serves a multi-container model, which this sagehost "
        "version cannot invoke."
    )
