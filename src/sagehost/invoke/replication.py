"""The routing table's copy in gateway replica processes (``--gateway-processes``).

The primary gateway process owns every endpoint, fleet, session, multi-model host and job.
Replicas serve the plain InvokeEndpoint path themselves (an in-service real-time endpoint whose
variants each run one container, with no inference components, shadow variants, data capture
or traffic shift in progress) from a copy of the table that names each variant's ready
instances; they hand every other call to the primary.

- ``export_routes`` (primary) turns the directory into that copy, JSON-ready.
- ``RouteFeed`` (primary) versions the copy and answers the replicas' long polls. A replica's
  next poll acknowledges the version it was sent, and it polls again only once it has finished
  its calls to instances that version dropped; ``synced`` waits for those acknowledgements, so
  an instance stops only after no replica will call it again.
- ``RouteFollower`` (replica) polls, rebuilds ``LiveEndpoint``s from each version, swaps them
  into its directory, drains, and polls again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sagehost.core.endpoint_states import INVOCABLE, EndpointStatus
from sagehost.core.live import EndpointDirectory, LiveEndpoint, LiveVariant
from sagehost.core.ports import Instance

log = logging.getLogger("sagehost.replication")

Routes = list[dict[str, Any]]


def replicable(endpoint: LiveEndpoint) -> bool:
    """Whether a replica can serve the endpoint's calls with nothing but the copied table."""
    return (
        endpoint.status in INVOCABLE
        and not endpoint.async_inference
        and not endpoint.component_based
        and not endpoint.components
        and not endpoint.shadows
        and not endpoint.observers
        and endpoint.shift is None
        and bool(endpoint.variants)
        and all(not v.containers and v.models is None for v in endpoint.variants)
    )


def export_routes(directory: EndpointDirectory) -> Routes:
    """The replicable endpoints, each variant with its ready instances' ids and URLs."""
    return [
        {
            "account": endpoint.account,
            "name": endpoint.name,
            "region": endpoint.region,
            "status": endpoint.status.value,
            "timeout": endpoint.invocation_timeout_s,
            "variants": [
                {
                    "name": variant.name,
                    "weight": variant.weight,
                    "container": variant.container,
                    "routing": variant.routing,
                    "instances": [
                        [instance.instance_id, instance.base_url]
                        for instance in variant.fleet.instances
                        if instance.ready and instance.base_url is not None
                    ],
                }
                for variant in endpoint.variants
            ],
        }
        for endpoint in directory.all()
        if replicable(endpoint)
    ]


@dataclass
class _Replica:
    sent: int = 0  # the latest version it was sent
    acked: int = 0  # the latest version it applied and drained


class RouteFeed:
    """The primary's side: the current copy, its version, and who has caught up with it."""

    def __init__(
        self, directory: EndpointDirectory, *, tick_s: float = 0.05, sync_timeout_s: float = 15.0
    ) -> None:
        self._directory = directory
        self._tick_s = tick_s
        self._sync_timeout_s = sync_timeout_s
        self._routes: Routes = []
        self._version = 0
        self._replicas: dict[str, _Replica] = {}
        self._changed = asyncio.Event()
        self._acked = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Look for changes every ``tick_s``: instances come and go without telling anyone."""
        self._ticker = asyncio.create_task(self._tick(), name="route feed")

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.wait({self._ticker})
        self._wake_pollers()

    def refresh(self) -> int:
        """Rebuild the copy; a new version if it changed. Returns the current version."""
        routes = export_routes(self._directory)
        if routes != self._routes:
            self._routes = routes
            self._version += 1
            self._wake_pollers()
        return self._version

    async def poll(self, replica: str, after: int, wait_s: float) -> dict[str, Any]:
        """The copy once its version is past ``after`` (or after ``wait_s``, unchanged).

        ``after`` acknowledges that version: the replica applied it and drained.
        """
        state = self._replicas.setdefault(replica, _Replica())
        state.acked = after
        self._wake_syncers()
        if self.refresh() == after:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait_s)
        state.sent = self._version
        return {"version": self._version, "endpoints": self._routes}

    def forget(self, replica: str) -> None:
        """A replica exited: nothing to wait for from it."""
        self._replicas.pop(replica, None)
        self._wake_syncers()

    async def synced(self) -> None:
        """Wait until every replica holding a copy has applied the current one and finished
        its calls to instances no longer in it (at most ``sync_timeout_s``)."""
        version = self.refresh()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._sync_timeout_s
        while True:
            behind = [n for n, r in self._replicas.items() if r.sent and r.acked < version]
            if not behind:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("gateway replicas %s did not catch up with routes %d", behind, version)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked.wait(), remaining)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            self.refresh()

    def _wake_pollers(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _wake_syncers(self) -> None:
        self._acked.set()
        self._acked = asyncio.Event()


class RouteFollower:
    """The replica's side: keeps ``directory`` equal to the primary's latest copy.

    ``fetch(after)`` long-polls the primary; ``instance(id, url)`` makes an instance to call.
    Instances are kept across versions by id and URL, so their counts of calls in flight (least
    outstanding routing) carry over.
    """

    def __init__(
        self,
        directory: EndpointDirectory,
        fetch: Callable[[int], Awaitable[dict[str, Any]]],
        instance: Callable[[str, str], Instance],
        *,
        drain_s: float = 10.0,
        retry_s: float = 0.5,
    ) -> None:
        self._directory = directory
        self._fetch = fetch
        self._make_instance = instance
        self._drain_s = drain_s
        self._retry_s = retry_s
        self._instances: dict[tuple[str, str], Instance] = {}
        self.version = 0

    async def run(self) -> None:
        while True:
            try:
                update = await self._fetch(self.version)
            except Exception as error:  # the primary is starting or stopping
                log.debug("route poll failed: %s", error)
                await asyncio.sleep(self._retry_s)
                continue
            try:
                version = int(update["version"])
                if version != self.version:
                    dropped = self.apply(update["endpoints"])
                    await self._drain(dropped)
                    self.version = version
            except Exception:
                # Never stop following: a replica with a stale copy would be waited for on
                # every change. Without a copy, everything goes to the primary.
                log.exception("could not apply routes; handing every call to the primary")
                self._directory.replace([])
                self._instances = {}
                await asyncio.sleep(self._retry_s)

    def apply(self, routes: Routes) -> list[Instance]:
        """Swap in the endpoints of ``routes``; returns the instances no longer listed."""
        kept: dict[tuple[str, str], Instance] = {}
        endpoints = [self._endpoint(entry, kept) for entry in routes]
        dropped = [i for key, i in self._instances.items() if key not in kept]
        self._instances = kept
        self._directory.replace(endpoints)
        return dropped

    def _endpoint(
        self, entry: dict[str, Any], kept: dict[tuple[str, str], Instance]
    ) -> LiveEndpoint:
        endpoint = LiveEndpoint(
            account=entry["account"],
            name=entry["name"],
            region=entry["region"],
            status=EndpointStatus(entry["status"]),
            invocation_timeout_s=float(entry["timeout"]),
        )
        variants = []
        for variant in entry["variants"]:
            members = []
            for instance_id, url in variant["instances"]:
                key = (instance_id, url)
                instance = kept.get(key) or self._instances.get(key)
                if instance is None:
                    instance = self._make_instance(instance_id, url)
                kept[key] = instance
                members.append(instance)
            variants.append(
                LiveVariant(
                    name=variant["name"],
                    weight=float(variant["weight"]),
                    fleet=ListedInstances(members),
                    container=variant["container"],
                    routing=variant["routing"],
                )
            )
        endpoint.set_variants(tuple(variants))
        return endpoint

    async def _drain(self, dropped: list[Instance]) -> None:
        """Wait (bounded) until calls already sent to ``dropped`` instances have finished."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._drain_s
        delay = 0.002
        while any(i.outstanding for i in dropped) and loop.time() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)


class ListedInstances:
    """A ``Fleet`` that is only a list of instances another process runs."""

    def __init__(self, instances: Sequence[Instance]) -> None:
        self._instances = instances

    @property
    def instances(self) -> Sequence[Instance]:
        return self._instances

    async def wait_ready(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def scale(self, count: int) -> None:
        raise NotImplementedError("A replica's copy of a fleet is not scaled.")
