"""The in-memory routing table: which endpoints exist right now and which fleets serve them.

``control`` writes it as endpoints change state; ``invoke`` only reads it. Keeping it apart from
the catalog means the invoke hot path never touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sagehost.core.endpoint_states import EndpointStatus
from sagehost.core.invocation import InvokeInput, InvokeOutput
from sagehost.core.ports import ContainerRequest, ContainerResponse, Fleet

LEAST_OUTSTANDING_REQUESTS = "LEAST_OUTSTANDING_REQUESTS"
RANDOM = "RANDOM"


class ModelHost(Protocol):
    """The multi-model side of a variant (§7.3): loads ``TargetModel``s into its fleet's
    instances on demand and calls the instance that holds one."""

    async def invoke(self, target_model: str, request: ContainerRequest) -> ContainerResponse:
        """Call ``target_model``, loading it first if no instance holds it."""
        ...

    async def close(self) -> None:
        """Stop background loads; the fleet itself is stopped by its owner."""
        ...


class CallObserver(Protocol):
    """Sees every successful real-time call of an endpoint (data capture, shadow traffic)."""

    def observe(self, request: InvokeInput, response: InvokeOutput) -> None:
        """Must return at once: any slow work goes to a background task of its own."""
        ...

    async def close(self) -> None:
        """Finish or drop the background work; calls observed afterwards are ignored."""
        ...


class ObserverFactory(Protocol):
    """Builds the observers an endpoint config asks for (``invoke`` implements it; ``control``
    calls it on every deployment)."""

    def build(
        self, endpoint: LiveEndpoint, config: dict[str, Any], shadows: tuple[LiveVariant, ...]
    ) -> tuple[CallObserver, ...]:
        """Observers for ``config`` (DataCaptureConfig) and its running ``shadows``."""
        ...


@dataclass(slots=True)
class LiveContainer:
    """One container of a multi-container model, with the instances that run it."""

    hostname: str
    fleet: Fleet


@dataclass(slots=True)
class LiveVariant:
    """A production variant (or a shadow variant, or an inference component's copies).

    ``fleet`` runs the model's only container, or its first one; ``containers`` lists every
    container of a multi-container model in pipeline order (empty for a single container).
    """

    name: str
    weight: float
    fleet: Fleet
    container: str = "primary"
    routing: str = LEAST_OUTSTANDING_REQUESTS  # RoutingConfig.RoutingStrategy
    containers: tuple[LiveContainer, ...] = ()
    direct: bool = False  # InferenceExecutionConfig.Mode == "Direct"
    models: ModelHost | None = None  # set on a multi-model variant
    sampling: float = 100.0  # shadow variants: the percentage of traffic copied to it

    def fleets(self) -> tuple[Fleet, ...]:
        """Every fleet the variant runs, to stop or count them."""
        if self.containers:
            return tuple(c.fleet for c in self.containers)
        return (self.fleet,)

    async def stop(self) -> None:
        if self.models is not None:
            await self.models.close()
        for fleet in self.fleets():
            await fleet.stop()


@dataclass(slots=True)
class LiveComponent:
    """An inference component: one model bound to a variant of a component-based endpoint,
    running ``copies`` (its ``fleet``'s instances)."""

    name: str
    variant_name: str
    serving: LiveVariant
    status: str = "Creating"


@dataclass(slots=True)
class TrafficShift:
    """A blue/green update in progress: ``fraction`` of the untargeted calls go to the endpoint's
    (new) ``variants``, the rest to the ``old`` ones."""

    old: tuple[LiveVariant, ...]
    fraction: float
    total_weight: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.total_weight = sum(v.weight for v in self.old)


@dataclass(slots=True)
class LiveEndpoint:
    account: str
    name: str
    region: str
    status: EndpointStatus
    variants: tuple[LiveVariant, ...] = ()
    invocation_timeout_s: float = 60.0
    # Serial pipelines: the Accept sent to every container but the last (the config tag
    # sagehost:pipeline-accept); None forwards the caller's, "" sends none.
    pipeline_accept: str | None = None
    async_inference: bool = False
    # The endpoint config's AsyncInferenceConfig, when it has one.
    async_config: dict[str, Any] | None = None
    total_weight: float = field(init=False, default=0.0)
    # Inference components by name; ``component_based`` when the config's variants name no
    # model, so every call must name a component.
    components: dict[str, LiveComponent] = field(default_factory=dict)
    component_based: bool = False
    shadows: tuple[LiveVariant, ...] = ()
    # Run after each successful real-time call; set by the control plane from the config.
    observers: tuple[CallObserver, ...] = ()
    # Set while an update moves traffic from the old variants to ``variants`` in steps.
    shift: TrafficShift | None = None

    def set_variants(self, variants: tuple[LiveVariant, ...]) -> None:
        """Swap the serving variants in one step, so no call ever sees a half-built table."""
        self.variants = variants
        self.total_weight = sum(v.weight for v in variants)


class EndpointDirectory:
    def __init__(self) -> None:
        self._endpoints: dict[tuple[str, str], LiveEndpoint] = {}

    def get(self, account: str, name: str) -> LiveEndpoint | None:
        return self._endpoints.get((account, name.lower()))

    def put(self, endpoint: LiveEndpoint) -> None:
        self._endpoints[(endpoint.account, endpoint.name.lower())] = endpoint

    def remove(self, account: str, name: str) -> None:
        self._endpoints.pop((account, name.lower()), None)

    def all(self) -> list[LiveEndpoint]:
        return list(self._endpoints.values())

    def replace(self, endpoints: list[LiveEndpoint]) -> None:
        """Swap in a whole new table in one step (a gateway replica's copy)."""
        self._endpoints = {(e.account, e.name.lower()): e for e in endpoints}
