"""The control-plane service: one entry point that dispatches an operation to its handler."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from sagehost.control.context import Store
from sagehost.control.deployer import Deployer
from sagehost.control.endpoint_configs import EndpointConfigs
from sagehost.control.endpoints import Endpoints
from sagehost.control.inference_components import InferenceComponents
from sagehost.control.models import Models
from sagehost.control.tags import Tags
from sagehost.core.errors import UnknownOperation
from sagehost.core.invocation import Caller
from sagehost.core.live import EndpointDirectory, ObserverFactory
from sagehost.core.ports import Catalog, Clock

# Operations after which calls may go elsewhere at once, or whose answer says where they go
# (an endpoint DescribeEndpoint reports InService is served by every gateway process).
_ROUTING = frozenset(
    {
        "CreateEndpoint",
        "DescribeEndpoint",
        "DescribeInferenceComponent",
        "DeleteEndpoint",
        "UpdateEndpoint",
        "UpdateEndpointWeightsAndCapacities",
        "CreateInferenceComponent",
        "UpdateInferenceComponent",
        "UpdateInferenceComponentRuntimeConfig",
        "DeleteInferenceComponent",
    }
)

Handler = Callable[[Caller, dict[str, Any]], "dict[str, Any] | Awaitable[dict[str, Any]]"]


class ControlPlane:
    def __init__(
        self,
        catalog: Catalog,
        clock: Clock,
        directory: EndpointDirectory,
        deployer: Deployer,
        *,
        settle_s: float = 20.0,
        observers: ObserverFactory | None = None,
        routes_changed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``routes_changed`` is awaited before an operation that changes where calls go
        returns (gateway replicas then route as the answer says)."""
        self._routes_changed = routes_changed
        store = Store(catalog, clock)
        self.models = Models(store)
        self.endpoint_configs = EndpointConfigs(store)
        self.inference_components = InferenceComponents(
            store, directory, deployer, settle_s=settle_s
        )
        self.endpoints = Endpoints(
            store,
            directory,
            deployer,
            settle_s=settle_s,
            observers=observers,
            components=self.inference_components,
        )
        self.tags = Tags(store)
        self._handlers: dict[str, Handler] = {
            "CreateModel": self.models.create,
            "DescribeModel": self.models.describe,
            "ListModels": self.models.list_models,
            "DeleteModel": self.models.delete,
            "CreateEndpointConfig": self.endpoint_configs.create,
            "DescribeEndpointConfig": self.endpoint_configs.describe,
            "ListEndpointConfigs": self.endpoint_configs.list_configs,
            "DeleteEndpointConfig": self.endpoint_configs.delete,
            "CreateEndpoint": self.endpoints.create,
            "DescribeEndpoint": self.endpoints.describe,
            "ListEndpoints": self.endpoints.list_endpoints,
            "DeleteEndpoint": self.endpoints.delete,
            "UpdateEndpoint": self.endpoints.update,
            "UpdateEndpointWeightsAndCapacities": self.endpoints.update_weights,
            "CreateInferenceComponent": self.inference_components.create,
            "DescribeInferenceComponent": self.inference_components.describe,
            "ListInferenceComponents": self.inference_components.list_components,
            "UpdateInferenceComponent": self.inference_components.update,
            "UpdateInferenceComponentRuntimeConfig": (
                self.inference_components.update_runtime_config
            ),
            "DeleteInferenceComponent": self.inference_components.delete,
            "AddTags": self.tags.add,
            "ListTags": self.tags.list_tags,
            "DeleteTags": self.tags.delete,
        }

    @property
    def operations(self) -> frozenset[str]:
        return frozenset(self._handlers)

    async def handle(
        self, operation: str, caller: Caller, params: dict[str, Any]
    ) -> dict[str, Any]:
        handler = self._handlers.get(operation)
        if handler is None:
            raise UnknownOperation(operation)
        result = handler(caller, params)
        if inspect.isawaitable(result):
            result = await result
        if self._routes_changed is not None and operation in _ROUTING:
            await self._routes_changed()
        return result
