"""``ProcessWorkerPool``: the ``WorkerPool`` that runs containers as supervised local processes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sagehost.core.ports import Clock, FleetSpec
from sagehost.workers.client import ContainerClient
from sagehost.workers.fleet import WorkerFleet
from sagehost.workers.settings import SystemClock, WorkerSettings


class ProcessWorkerPool:
    """Implements ``core.ports.WorkerPool``; owns the one HTTP client used to reach workers."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        clock: Clock | None = None,
        retire: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``retire`` is awaited before an instance stops taking calls for good (see
        ``invoke.replication.RouteFeed.synced``)."""
        self.settings = settings
        self._retire = retire
        self._clock: Clock = clock or SystemClock()
        self._fleets: set[WorkerFleet] = set()
        self._client: ContainerClient | None = None
        self._closed = False

    @property
    def fleets(self) -> frozenset[WorkerFleet]:
        return frozenset(self._fleets)

    async def launch(self, spec: FleetSpec) -> WorkerFleet:
        """Start the fleet in the background; ``wait_ready`` reports the outcome."""
        if self._closed:
            raise RuntimeError("The worker pool has been shut down.")
        fleet = WorkerFleet(
            spec,
            settings=self.settings,
            client=self._container_client(),
            clock=self._clock,
            on_stopped=self._fleets.discard,
            retire=self._retire,
        )
        self._fleets.add(fleet)
        return fleet

    async def shutdown(self) -> None:
        """Stop every fleet at once (each drains, then SIGTERM, then SIGKILL), then the client."""
        self._closed = True
        try:
            await asyncio.gather(*(fleet.stop() for fleet in list(self._fleets)))
        finally:
            if self._client is not None:
                await self._client.close()

    def _container_client(self) -> ContainerClient:
        # The client's connections bind to the running loop, so it is made on first use.
        if self._client is None:
            self._client = ContainerClient()
        return self._client
