"""CreateInferenceComponent, DescribeInferenceComponent, ListInferenceComponents,
UpdateInferenceComponent, UpdateInferenceComponentRuntimeConfig and DeleteInferenceComponent
(§7.5, §10.2), and the copies that run each component.

A component's copies are one fleet, published as a ``LiveComponent`` in its endpoint's routing
table. Its status changes only in :meth:`InferenceComponents._set`, along ``_NEXT``; the changes
of one component (bring-up, update, resize) run one at a time, in the order they were asked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from enum import StrEnum
from functools import partial
from typing import Any

from sagehost.control.component_copies import launch_copies, ready_copies, resize_copies
from sagehost.control.component_specs import (
    SPEC_KEYS,
    copy_count,
    describe_record,
    host_variant,
    runnable_model,
    spec_fields,
    specifications,
    summary,
)
from sagehost.control.context import Store
from sagehost.control.deployer import Deployer
from sagehost.control.listing import page
from sagehost.core.errors import DeploymentFailed, InvalidRequest, ResourceConflict
from sagehost.core.invocation import Caller
from sagehost.core.live import EndpointDirectory, LiveComponent
from sagehost.core.resources import Kind, arn

log = logging.getLogger("sagehost.control")

KIND = Kind.INFERENCE_COMPONENT
MAX_FAILURE_REASON = 1024
Key = tuple[str, str]


class ComponentStatus(StrEnum):
    CREATING = "Creating"
    IN_SERVICE = "InService"
    UPDATING = "Updating"
    FAILED = "Failed"
    DELETING = "Deleting"


C = ComponentStatus
_NEXT: dict[ComponentStatus, frozenset[ComponentStatus]] = {
    C.CREATING: frozenset({C.IN_SERVICE, C.FAILED, C.DELETING}),
    C.IN_SERVICE: frozenset({C.UPDATING, C.FAILED, C.DELETING}),
    C.UPDATING: frozenset({C.IN_SERVICE, C.DELETING}),
    C.FAILED: frozenset({C.DELETING}),
    C.DELETING: frozenset(),
}
_BUSY = frozenset({C.CREATING, C.UPDATING, C.DELETING})


class InferenceComponents:
    def __init__(
        self,
        store: Store,
        directory: EndpointDirectory,
        deployer: Deployer,
        *,
        settle_s: float = 20.0,
    ) -> None:
        self._store = store
        self._directory = directory
        self._deployer = deployer
        self._settle_s = settle_s
        self._locks: dict[Key, asyncio.Lock] = {}
        self._tasks: dict[Key, asyncio.Task[None]] = {}  # the latest change of each component
        self._running: set[asyncio.Task[None]] = set()

    # -- operations ---------------------------------------------------------------------------

    async def create(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        name = params["InferenceComponentName"]
        component_arn = arn(caller.region, caller.account, KIND, name)
        if self._store.find(caller, KIND, name) is not None:
            raise ResourceConflict(
                f'Cannot create already existing inference component "{component_arn}".'
            )
        endpoint = self._store.get(caller, Kind.ENDPOINT, params["EndpointName"])
        variant = host_variant(endpoint, params.get("VariantName"))
        specs = specifications(params)
        if specs is None:
            raise InvalidRequest("Exactly one of Specification or Specifications must be given.")
        model = runnable_model(self._store, caller, name, specs[0])
        runtime = params.get("RuntimeConfig")
        copies = int(runtime["CopyCount"]) if runtime else (0 if model is None else 1)
        now = self._store.now()
        record: dict[str, Any] = {
            "InferenceComponentName": name,
            "InferenceComponentArn": component_arn,
            "EndpointName": endpoint["EndpointName"],
            "EndpointArn": endpoint["EndpointArn"],
            "VariantName": variant["VariantName"],
            **spec_fields(params),
            "RuntimeConfig": {"CopyCount": copies},
            "InferenceComponentStatus": C.CREATING.value,
            "CreationTime": now,
            "LastModifiedTime": now,
            "Tags": list(params.get("Tags") or []),
            "_region": caller.region,
            "_generation": 1,
            "_model": model,
        }
        self._store.create(caller, KIND, name, record)
        if model is None:
            # An adapter (BaseInferenceComponentName) is stored, but runs nothing of its own.
            self._set(caller.account, record, C.IN_SERVICE)
        else:
            await self._bring_up(caller.account, record)
        return {"InferenceComponentArn": component_arn}

    async def describe(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        name = params["InferenceComponentName"]
        record = self._store.get(caller, KIND, name)
        task = self._tasks.get((caller.account, name.lower()))
        if (
            task is not None
            and self._settle_s > 0
            and record["InferenceComponentStatus"] != C.DELETING
        ):
            # As DescribeEndpoint does: answer with the settled status when it comes soon.
            await asyncio.wait([task], timeout=self._settle_s)
            record = self._store.get(caller, KIND, name)
        return describe_record(record, ready_copies(self._published(caller.account, record)))

    def list_components(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        status = params.get("StatusEquals")
        endpoint = (params.get("EndpointNameEquals") or "").lower()
        variant = params.get("VariantNameEquals")

        def keep(record: dict[str, Any]) -> bool:
            return (
                (not status or record["InferenceComponentStatus"] == status)
                and (not endpoint or record["EndpointName"].lower() == endpoint)
                and (not variant or record["VariantName"] == variant)
            )

        records, token = page(
            self._store.scan(caller, KIND),
            params,
            name_key="InferenceComponentName",
            sort_keys={
                "Name": lambda r: r["InferenceComponentName"].lower(),
                "CreationTime": lambda r: r["CreationTime"],
                "Status": lambda r: r["InferenceComponentStatus"],
            },
            extra_filter=keep,
        )
        out: dict[str, Any] = {"InferenceComponents": [summary(r) for r in records]}
        if token:
            out["NextToken"] = token
        return out

    async def update(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        name = params["InferenceComponentName"]
        record = self._store.get(caller, KIND, name)
        self._check_idle(record)
        specs = specifications(params)
        runtime = params.get("RuntimeConfig")
        if specs is None and runtime is None:
            raise InvalidRequest(
                "Give a Specification, Specifications or RuntimeConfig to update the "
                f'inference component "{record["InferenceComponentArn"]}".'
            )
        copies = int(runtime["CopyCount"]) if runtime else copy_count(record)
        pending: dict[str, Any] = {"CopyCount": copies}
        if specs is not None:
            pending["_model"] = runnable_model(self._store, caller, name, specs[0])
            pending.update(spec_fields(params))
        if "DeploymentConfig" in params:
            record["LastDeploymentConfig"] = params["DeploymentConfig"]
        self._begin_change(caller.account, record, pending)
        return {"InferenceComponentArn": record["InferenceComponentArn"]}

    async def update_runtime_config(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        name = params["InferenceComponentName"]
        record = self._store.get(caller, KIND, name)
        self._check_idle(record)
        copies = int(params["DesiredRuntimeConfig"]["CopyCount"])
        self._begin_change(caller.account, record, {"CopyCount": copies})
        return {"InferenceComponentArn": record["InferenceComponentArn"]}

    async def delete(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        name = params["InferenceComponentName"]
        record = self._store.get(caller, KIND, name)
        if record["InferenceComponentStatus"] == C.DELETING:
            return {}
        self._set(caller.account, record, C.DELETING)
        live = self._unpublish(caller.account, record)
        # A change in progress is abandoned; whatever it started is stopped by its own cleanup.
        previous = self._tasks.get((caller.account, name.lower()))
        self._start(caller.account, name, self._finish_delete(caller.account, name, live, previous))
        return {}

    # -- what endpoints.py asks ---------------------------------------------------------------

    def check_endpoint_deletable(
        self, caller: Caller, endpoint_name: str, endpoint_arn: str
    ) -> None:
        """AWS refuses to delete an endpoint that still hosts inference components."""
        names = sorted(
            r["InferenceComponentName"]
            for r in self._store.scan(caller, KIND)
            if r["EndpointName"].lower() == endpoint_name.lower()
            and r["InferenceComponentStatus"] != C.DELETING
        )
        if names:
            raise InvalidRequest(
                f'Cannot delete endpoint "{endpoint_arn}" while it hosts inference components '
                f"({', '.join(names)}); delete them first."
            )

    async def restore(self) -> None:
        """Bring back every persisted component after a restart, once the endpoints are back in
        the routing table. An interrupted update is dropped: the component comes back as it was
        before it."""
        for account, record in self._store.catalog.all(KIND.value):
            status = C(record["InferenceComponentStatus"])
            if status is C.DELETING:
                self._store.catalog.delete(account, KIND.value, record["InferenceComponentName"])
                continue
            if status is C.FAILED:
                continue
            record.pop("_pending", None)
            if status is C.UPDATING:
                self._set(account, record, C.IN_SERVICE)
            if record["_model"] is not None:
                await self._bring_up(account, record)

    async def shutdown(self) -> None:
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def resize(self, account: str, name: str, count: int) -> None:
        """A resize asked through the routing table (a call to a component with no copies).
        It runs like UpdateInferenceComponentRuntimeConfig, unless another change is under way."""
        record = self._store.catalog.get(account, KIND.value, name)
        if (
            record is None
            or record["InferenceComponentStatus"] != C.IN_SERVICE
            or copy_count(record) == count
        ):
            return
        log.info("inference component %s: scaling to %d copies on demand", name, count)
        task = self._begin_change(account, record, {"CopyCount": count})
        await asyncio.shield(task)

    # -- changes ------------------------------------------------------------------------------

    async def _bring_up(self, account: str, record: dict[str, Any]) -> None:
        """Start the copies of a new or restored component, publish them, and settle its status
        in the background once they pass their health check."""
        name = record["InferenceComponentName"]
        try:
            live = await self._launch(account, record, record["_model"], copy_count(record))
        except DeploymentFailed as failure:
            if self._still_wanted(account, record):
                self._fail(account, record, failure.message)
            return
        if not self._still_wanted(account, record):
            # Deleted while its copies were starting: the deletion found nothing to stop.
            await live.serving.stop()
            return
        live.status = record["InferenceComponentStatus"]
        endpoint = self._directory.get(account, record["EndpointName"])
        if endpoint is None:
            await live.serving.stop()
            self._fail(account, record, f"Endpoint {record['EndpointName']} no longer exists.")
            return
        endpoint.components[name.lower()] = live
        self._start(account, name, self._settle_new(account, name, live))

    def _still_wanted(self, account: str, record: dict[str, Any]) -> bool:
        """Whether the component ``record`` was read from still exists and is not being
        deleted (a component deleted and created again under its name is another one)."""
        current = self._find(account, record["InferenceComponentName"])
        return (
            current is not None
            and current["InferenceComponentStatus"] != C.DELETING
            and current["InferenceComponentArn"] == record["InferenceComponentArn"]
            and current["CreationTime"] == record["CreationTime"]
        )

    async def _settle_new(self, account: str, name: str, live: LiveComponent) -> None:
        async with self._lock(account, name):
            if self._find(account, name) is None:
                return
            try:
                await live.serving.fleet.wait_ready()
            except DeploymentFailed as failure:
                reason = failure.message
            except Exception as error:
                log.exception("inference component %s failed to start", name)
                reason = f"Internal error while starting the copies: {error}"
            else:
                record = self._find(account, name)
                if record is not None and record["InferenceComponentStatus"] == C.CREATING:
                    self._set(account, record, C.IN_SERVICE)
                return
            record = self._find(account, name)
            if record is not None and record["InferenceComponentStatus"] != C.DELETING:
                self._unpublish(account, record)
                await live.serving.stop()
                self._fail(account, record, reason)

    def _begin_change(
        self, account: str, record: dict[str, Any], pending: dict[str, Any]
    ) -> asyncio.Task[None]:
        record["_pending"] = pending
        self._set(account, record, C.UPDATING)
        name = record["InferenceComponentName"]
        return self._start(account, name, self._change(account, name))

    async def _change(self, account: str, name: str) -> None:
        """Apply the record's pending change: a new specification runs blue/green (new copies,
        then the swap, then the old ones drain); a new copy count resizes the fleet in place."""
        async with self._lock(account, name):
            record = self._find(account, name)
            if record is None or record["InferenceComponentStatus"] != C.UPDATING:
                return
            pending = record["_pending"]
            live = self._published(account, record)
            failure: str | None = None
            try:
                if "_model" in pending:
                    await self._replace(account, record, live, pending)
                elif live is not None:
                    await resize_copies(live, pending["CopyCount"], copy_count(record))
            except DeploymentFailed as error:
                failure = error.message
            except Exception as error:
                log.exception("update of inference component %s failed", name)
                failure = f"Internal error while updating: {error}"
            record = self._find(account, name)
            if record is None or record["InferenceComponentStatus"] != C.UPDATING:
                return
            record.pop("_pending", None)
            if failure is None:
                record.pop("FailureReason", None)
                record["RuntimeConfig"] = {"CopyCount": pending["CopyCount"]}
                if "_model" in pending:
                    for key in SPEC_KEYS:
                        record.pop(key, None)
                    record.update({k: v for k, v in pending.items() if k != "CopyCount"})
                    record["_generation"] += 1
                    record["_deployed_at"] = self._store.now()
            else:
                log.warning("inference component %s: %s", name, failure)
                record["FailureReason"] = f"{failure} The previous configuration is kept."[
                    -MAX_FAILURE_REASON:
                ]
            self._set(account, record, C.IN_SERVICE)

    async def _replace(
        self,
        account: str,
        record: dict[str, Any],
        live: LiveComponent | None,
        pending: dict[str, Any],
    ) -> None:
        upcoming = {k: v for k, v in record.items() if k not in SPEC_KEYS}
        upcoming.update(pending, _generation=record["_generation"] + 1)
        new: LiveComponent | None = None
        if pending["_model"] is not None:
            new = await self._launch(account, upcoming, pending["_model"], pending["CopyCount"])
            try:
                await new.serving.fleet.wait_ready()
            except BaseException:
                await new.serving.stop()
                raise
        old = live.serving if live is not None else None
        if live is not None and new is not None:
            live.serving = new.serving  # one assignment: a call sees the old copies or the new
        elif new is not None:
            new.status = C.UPDATING
            endpoint = self._directory.get(account, record["EndpointName"])
            if endpoint is not None:
                endpoint.components[record["InferenceComponentName"].lower()] = new
        else:
            self._unpublish(account, record)
        if old is not None:
            # Calls already routed to the old copies finish first: Fleet.stop drains them.
            self._start_background(old.stop())

    async def _finish_delete(
        self,
        account: str,
        name: str,
        live: LiveComponent | None,
        previous: asyncio.Task[None] | None,
    ) -> None:
        if previous is not None and not previous.done():
            previous.cancel()
            await asyncio.wait({previous})
        if live is not None:
            await live.serving.stop()
        self._store.catalog.delete(account, KIND.value, name)
        self._locks.pop((account, name.lower()), None)

    # -- helpers ------------------------------------------------------------------------------

    async def _launch(
        self, account: str, record: dict[str, Any], model: dict[str, Any], copies: int
    ) -> LiveComponent:
        name = record["InferenceComponentName"]
        host = self._store.catalog.get(account, Kind.ENDPOINT.value, record["EndpointName"])
        key = f"{account}-{name.lower()}_ic{record['_generation']}"  # "_": no endpoint has it
        resize = partial(self.resize, account, name)
        return await launch_copies(self._deployer, key, record, host, model, copies, resize)

    def _check_idle(self, record: dict[str, Any]) -> None:
        status = record["InferenceComponentStatus"]
        if status in _BUSY:
            raise ResourceConflict(
                f'Cannot update in-progress inference component "{record["InferenceComponentArn"]}".'
            )
        if status == C.FAILED:
            raise InvalidRequest(
                f'Cannot update failed inference component "{record["InferenceComponentArn"]}"; '
                "delete it and create it again."
            )

    def _set(self, account: str, record: dict[str, Any], status: ComponentStatus) -> None:
        """The one place a component's status changes."""
        current = C(record["InferenceComponentStatus"])
        if status not in _NEXT[current]:
            raise AssertionError(f"inference component status {current} cannot become {status}")
        record["InferenceComponentStatus"] = status.value
        record["LastModifiedTime"] = self._store.now()
        self._store.put(account, KIND, record["InferenceComponentName"], record)
        live = self._published(account, record)
        if live is not None:
            live.status = status.value

    def _fail(self, account: str, record: dict[str, Any], reason: str) -> None:
        log.warning("inference component %s: %s", record["InferenceComponentName"], reason)
        record["FailureReason"] = reason[-MAX_FAILURE_REASON:]
        self._set(account, record, C.FAILED)

    def _published(self, account: str, record: dict[str, Any]) -> LiveComponent | None:
        endpoint = self._directory.get(account, record["EndpointName"])
        if endpoint is None:
            return None
        return endpoint.components.get(record["InferenceComponentName"].lower())

    def _unpublish(self, account: str, record: dict[str, Any]) -> LiveComponent | None:
        endpoint = self._directory.get(account, record["EndpointName"])
        if endpoint is None:
            return None
        return endpoint.components.pop(record["InferenceComponentName"].lower(), None)

    def _find(self, account: str, name: str) -> dict[str, Any] | None:
        return self._store.catalog.get(account, KIND.value, name)

    def _lock(self, account: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((account, name.lower()), asyncio.Lock())

    def _start(
        self, account: str, name: str, work: Coroutine[Any, Any, None]
    ) -> asyncio.Task[None]:
        key = (account, name.lower())
        task = self._start_background(work)
        self._tasks[key] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._tasks.get(key) is done:
                del self._tasks[key]

        task.add_done_callback(forget)
        return task

    def _start_background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task
