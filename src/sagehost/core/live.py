"""The in-memory routing table: which endpoints exist right now and which fleets serve them.

``control`` writes it as endpoints change state; ``invoke`` only reads it. Keeping it apart from
the catalog means the invoke hot path never touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sagehost.core.endpoint_states import EndpointStatus
from sagehost.core.ports import Fleet


@dataclass(slots=True)
class LiveVariant:
    name: str
    weight: float
    fleet: Fleet
    container: str = "primary"


@dataclass(slots=True)
class LiveEndpoint:
    account: str
    name: str
    region: str
    status: EndpointStatus
    variants: tuple[LiveVariant, ...] = ()
    invocation_timeout_s: float = 60.0
    async_inference: bool = False
    # The endpoint config's AsyncInferenceConfig, when it has one.
    async_config: dict[str, Any] | None = None
    total_weight: float = field(init=False, default=0.0)

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
