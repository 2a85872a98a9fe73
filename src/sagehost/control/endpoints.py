"""CreateEndpoint, DescribeEndpoint, ListEndpoints, UpdateEndpoint,
UpdateEndpointWeightsAndCapacities and DeleteEndpoint, and the deployments behind them.

Every status change goes through :meth:`Endpoints._transition`, which asks
``core.endpoint_states`` for the next status, persists the record and updates the live table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from sagehost.control.component_specs import hosts_components
from sagehost.control.context import Store
from sagehost.control.deployer import Deployer
from sagehost.control.endpoint_configs import invocation_timeout, pipeline_accept
from sagehost.control.endpoint_fleets import Fleets, launch_fleets, stop_all
from sagehost.control.endpoint_views import describe_endpoint
from sagehost.control.inference_components import InferenceComponents
from sagehost.control.listing import page
from sagehost.control.shifting import NewFleetUnhealthy, roll_back, shift_traffic
from sagehost.control.traffic import capacity_of, deployment_config, schedule
from sagehost.core.endpoint_states import (
    IN_PROGRESS,
    EndpointEvent,
    EndpointStatus,
    IllegalTransition,
    advance,
)
from sagehost.core.errors import DeploymentFailed, InvalidRequest, ResourceConflict
from sagehost.core.invocation import Caller
from sagehost.core.live import (
    CallObserver,
    EndpointDirectory,
    LiveEndpoint,
    LiveVariant,
    ObserverFactory,
)
from sagehost.core.resources import Kind, arn

log = logging.getLogger("sagehost.control")

MAX_FAILURE_REASON = 1024
E = EndpointEvent
S = EndpointStatus


class Endpoints:
    def __init__(
        self,
        store: Store,
        directory: EndpointDirectory,
        deployer: Deployer,
        *,
        settle_s: float = 20.0,
        observers: ObserverFactory | None = None,
        components: InferenceComponents | None = None,
    ) -> None:
        self._store = store
        self._components = components
        self._directory = directory
        self._deployer = deployer
        self._settle_s = settle_s
        self._observers = observers
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._retiring: set[asyncio.Future[Any]] = set()
        # Each endpoint's call observers, kept here too so a delete can close them.
        self._observing: dict[tuple[str, str], tuple[CallObserver, ...]] = {}

    # -- operations ---------------------------------------------------------------------------

    async def create(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointName"]
        endpoint_arn = arn(caller.region, caller.account, Kind.ENDPOINT, name)
        if self._store.find(caller, Kind.ENDPOINT, name) is not None:
            raise ResourceConflict(f'Cannot create already existing endpoint "{endpoint_arn}".')
        config, models = self._snapshot(caller, params["EndpointConfigName"])
        now = self._store.now()
        record: dict[str, Any] = {
            "EndpointName": name,
            "EndpointArn": endpoint_arn,
            "EndpointConfigName": config["EndpointConfigName"],
            "EndpointStatus": S.CREATING.value,
            "CreationTime": now,
            "LastModifiedTime": now,
            "Tags": list(params.get("Tags") or []),
            "_region": caller.region,
            "_generation": 1,
            "_config": config,
            "_models": models,
        }
        self._store.create(caller, Kind.ENDPOINT, name, record)
        live = LiveEndpoint(
            account=caller.account,
            name=name,
            region=caller.region,
            status=S.CREATING,
            component_based=hosts_components(config),
            invocation_timeout_s=invocation_timeout(config.get("Tags") or []),
            pipeline_accept=pipeline_accept(config.get("Tags") or []),
            async_inference="AsyncInferenceConfig" in config,
            async_config=config.get("AsyncInferenceConfig"),
        )
        self._directory.put(live)
        self._start(caller.account, name, self._deploy_new(caller.account, name))
        return {"EndpointArn": endpoint_arn}

    async def describe(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointName"]
        record = self._store.get(caller, Kind.ENDPOINT, name)
        task = self._tasks.get((caller.account, name.lower()))
        if task is not None and self._settle_s > 0 and record["EndpointStatus"] != S.DELETING:
            # Answer with the settled status when the deployment finishes soon: boto3's waiter
            # sleeps 30 s after every "Creating", so waiting a few seconds here saves that.
            await asyncio.wait([task], timeout=self._settle_s)
            record = self._store.get(caller, Kind.ENDPOINT, name)
        return describe_endpoint(
            record, self._directory.get(caller.account, record["EndpointName"])
        )

    def list_endpoints(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        status = params.get("StatusEquals")
        records, token = page(
            self._store.scan(caller, Kind.ENDPOINT),
            params,
            name_key="EndpointName",
            sort_keys={
                "Name": lambda r: r["EndpointName"].lower(),
                "CreationTime": lambda r: r["CreationTime"],
                "Status": lambda r: r["EndpointStatus"],
            },
            extra_filter=(lambda r: r["EndpointStatus"] == status) if status else None,
        )
        fields = (
            "EndpointName",
            "EndpointArn",
            "CreationTime",
            "LastModifiedTime",
            "EndpointStatus",
        )
        out: dict[str, Any] = {"Endpoints": [{k: r[k] for k in fields} for r in records]}
        if token:
            out["NextToken"] = token
        return out

    async def update(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointName"]
        record = self._store.get(caller, Kind.ENDPOINT, name)
        config, models = self._snapshot(caller, params["EndpointConfigName"])
        deployment = deployment_config(params, record, config)
        self._transition(caller.account, record, E.UPDATE)
        record["_pending"] = {
            "EndpointConfigName": config["EndpointConfigName"],
            "StartTime": self._store.now(),
            "_config": config,
            "_models": models,
            "_deployment": deployment,
        }
        self._save(caller.account, record)
        self._start(caller.account, name, self._deploy_update(caller.account, name))
        return {"EndpointArn": record["EndpointArn"]}

    async def update_weights(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        """Weights and instance counts change in place: the fleets grow or shrink and keep
        their instances (and so their sessions and loaded models); no new fleet is started."""
        name = params["EndpointName"]
        record = self._store.get(caller, Kind.ENDPOINT, name)
        variants = {v["VariantName"]: v for v in record["_config"]["ProductionVariants"]}
        changes = params["DesiredWeightsAndCapacities"]
        for change in changes:
            if change["VariantName"] not in variants:
                raise InvalidRequest(
                    f"The variant name(s) [{change['VariantName']}] is/are not present "
                    f'in the endpoint "{record["EndpointArn"]}".'
                )
            if change.get("DesiredInstanceCount") == 0 and variants[change["VariantName"]].get(
                "ModelName"
            ):
                raise InvalidRequest(
                    f"Variant {change['VariantName']} cannot have 0 instances: only the "
                    "variants of an endpoint for inference components scale to zero."
                )
        config = dict(record["_config"])
        config["ProductionVariants"] = [dict(v) for v in config["ProductionVariants"]]
        for variant in config["ProductionVariants"]:
            for change in changes:
                if change["VariantName"] == variant["VariantName"]:
                    if "DesiredWeight" in change:
                        variant["InitialVariantWeight"] = float(change["DesiredWeight"])
                    if "DesiredInstanceCount" in change:
                        variant["InitialInstanceCount"] = int(change["DesiredInstanceCount"])
        self._transition(caller.account, record, E.UPDATE)
        record["_pending"] = {
            "EndpointConfigName": record["EndpointConfigName"],
            "StartTime": self._store.now(),
            "_config": config,
            "_models": record["_models"],
        }
        self._save(caller.account, record)
        self._start(caller.account, name, self._resize(caller.account, name))
        return {"EndpointArn": record["EndpointArn"]}

    async def _resize(self, account: str, name: str) -> None:
        record = self._record(account, name)
        live = self._directory.get(account, name)
        if live is None or not live.variants or live.component_based:
            # Nothing is serving (a Failed endpoint): deploy the new config as an update does.
            await self._deploy_update(account, name)
            return
        wanted = {v["VariantName"]: v for v in record["_pending"]["_config"]["ProductionVariants"]}
        before = {v["VariantName"]: v for v in record["_config"]["ProductionVariants"]}

        def count(variant: dict[str, Any]) -> int:
            return int(variant.get("InitialInstanceCount") or 1)

        resized = [v for v in live.variants if count(wanted[v.name]) != count(before[v.name])]
        try:
            for variant in resized:
                for fleet in variant.fleets():
                    await fleet.scale(count(wanted[variant.name]))
            await asyncio.gather(*(f.wait_ready() for v in resized for f in v.fleets()))
        except DeploymentFailed as failure:
            for variant in resized:
                for fleet in variant.fleets():
                    await fleet.scale(count(before[variant.name]))
            self._fail(account, name, E.UPDATE_FAILED, failure.message)
            return
        # The new weights apply once the new capacity serves.
        for variant in live.variants:
            variant.weight = float(wanted[variant.name].get("InitialVariantWeight", 1.0))
        live.set_variants(live.variants)
        record = self._record(account, name)
        record["_config"] = record.pop("_pending")["_config"]
        record.pop("FailureReason", None)
        self._transition(account, record, E.UPDATE_DONE)

    async def delete(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointName"]
        record = self._store.get(caller, Kind.ENDPOINT, name)
        if self._components is not None:
            self._components.check_endpoint_deletable(caller, name, record["EndpointArn"])
        self._transition(caller.account, record, E.DELETE)
        live = self._directory.get(caller.account, name)
        self._directory.remove(caller.account, name)
        serving = [*live.variants, *live.shadows] if live else []
        self._start(caller.account, name, self._finish_delete(caller.account, record, serving))
        return {}

    # -- lifecycle ----------------------------------------------------------------------------

    async def restore(self) -> None:
        """Bring back every persisted endpoint after a restart; runs in the background."""
        for account, record in self._store.catalog.all(Kind.ENDPOINT.value):
            name = record["EndpointName"]
            status = S(record["EndpointStatus"])
            if status is S.DELETING:
                self._store.catalog.delete(account, Kind.ENDPOINT.value, name)
                continue
            interrupted = record.pop("_pending", None)
            if interrupted is not None:
                record["FailureReason"] = (
                    f"The update to endpoint configuration {interrupted['EndpointConfigName']} "
                    "was interrupted when sagehost stopped; the endpoint serves its previous "
                    "configuration. Update it again."
                )
            live = LiveEndpoint(
                account=account,
                name=name,
                region=record["_region"],
                status=status,
                component_based=hosts_components(record["_config"]),
                invocation_timeout_s=invocation_timeout(record["_config"].get("Tags") or []),
                pipeline_accept=pipeline_accept(record["_config"].get("Tags") or []),
                async_inference="AsyncInferenceConfig" in record["_config"],
                async_config=record["_config"].get("AsyncInferenceConfig"),
            )
            self._directory.put(live)
            try:
                self._transition(account, record, E.RESTORE)
            except IllegalTransition:
                continue  # Failed or OutOfService: nothing to run
            self._start(account, name, self._deploy_new(account, name))
        if self._components is not None:
            await self._components.restore()  # their endpoints are in the routing table now

    async def shutdown(self) -> None:
        if self._components is not None:
            await self._components.shutdown()
        tasks: list[asyncio.Future[Any]] = [*self._tasks.values(), *self._retiring]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # The pool stops every process; model hosts also stop their background loads and
        # remove their cached files.
        hosts = [
            variant.models
            for live in self._directory.all()
            for variant in (*live.variants, *live.shadows)
            if variant.models is not None
        ]
        await asyncio.gather(*(host.close() for host in hosts), return_exceptions=True)

    def _start(self, account: str, name: str, work: Any) -> None:
        key = (account, name.lower())
        task = asyncio.get_running_loop().create_task(work)
        self._tasks[key] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._tasks.get(key) is done:
                del self._tasks[key]

        task.add_done_callback(forget)

    async def _fleets(
        self,
        account: str,
        name: str,
        generation: int,
        snapshot: dict[str, Any],
        failed: EndpointEvent,
    ) -> Fleets | None:
        """Deploy a config snapshot's variants; on failure record ``failed`` and return None
        (nothing is left running)."""
        try:
            return await launch_fleets(
                self._deployer, self._store, account, name, generation, snapshot
            )
        except DeploymentFailed as failure:
            self._fail(account, name, failed, failure.message)
        except Exception as error:
            log.exception("deployment of endpoint %s failed", name)
            self._fail(account, name, failed, f"Internal error while deploying: {error}")
        return None

    async def _deploy_new(self, account: str, name: str) -> None:
        record = self._record(account, name)
        fleets = await self._fleets(account, name, record["_generation"], record, E.DEPLOY_FAILED)
        if fleets is None:
            return
        models = record["_models"]  # with the shadows' models the deployment added
        record = self._record(account, name)
        record["_models"] = models
        live = self._directory.get(account, name)
        if live is not None:
            live.set_variants(fleets.variants)
            self._observe(live, record["_config"], fleets.shadows)
        self._transition(account, record, E.DEPLOYED)

    async def _deploy_update(self, account: str, name: str) -> None:
        """Blue/green: start the new fleets, move the traffic to them by the DeploymentConfig's
        steps, then retire the old ones. Any failure before the end leaves the old fleets
        serving the old config."""
        record = self._record(account, name)
        pending = record["_pending"]
        generation = record["_generation"] + 1
        plan = schedule(
            pending.get("_deployment"), capacity_of(pending["_config"]["ProductionVariants"])
        )
        live = self._directory.get(account, name)
        old: tuple[LiveVariant, ...] = live.variants if live is not None else ()
        fleets: Fleets | None = None
        try:
            async with asyncio.timeout(plan.timeout_s):
                fleets = await self._fleets(account, name, generation, pending, E.UPDATE_FAILED)
                if fleets is None:
                    return
                if live is not None:
                    await shift_traffic(live, fleets.variants, plan)
        except (TimeoutError, NewFleetUnhealthy) as failure:
            if fleets is not None:
                self._roll_back(live, old, fleets)
            reason = (
                str(failure)
                if isinstance(failure, NewFleetUnhealthy)
                else f"The update did not finish within MaximumExecutionTimeoutInSeconds "
                f"({plan.timeout_s:g} s)"
            )
            self._fail(
                account, name, E.UPDATE_FAILED, f"{reason}; the previous configuration is serving."
            )
            return
        retired: list[LiveVariant] = list(old)
        if live is not None:
            live.invocation_timeout_s = invocation_timeout(pending["_config"].get("Tags") or [])
            live.async_inference = "AsyncInferenceConfig" in pending["_config"]
            live.async_config = pending["_config"].get("AsyncInferenceConfig")
            live.component_based = hosts_components(pending["_config"])
            retired.extend(self._observe(live, pending["_config"], fleets.shadows))
        else:
            retired.extend(fleets.shadows)
        record = self._record(account, name)
        record.pop("_pending", None)
        record.pop("FailureReason", None)
        record["_generation"] = generation
        record["_config"] = pending["_config"]
        record["_models"] = pending["_models"]
        record["EndpointConfigName"] = pending["EndpointConfigName"]
        if pending.get("_deployment"):
            record["LastDeploymentConfig"] = pending["_deployment"]
        self._transition(account, record, E.UPDATE_DONE)
        # Calls already routed to the old fleet finish first: Fleet.stop drains before signalling.
        # That drain runs on its own so DescribeEndpoint does not wait for it.
        self._retire(retired, plan.termination_wait_s)

    def _roll_back(
        self, live: LiveEndpoint | None, old: tuple[LiveVariant, ...], fleets: Fleets
    ) -> None:
        """Give the traffic back to the old variants at once; the new fleets drain and stop
        in the background."""
        if live is not None:
            roll_back(live, old)
        self._retire([*fleets.variants, *fleets.shadows])

    def _observe(
        self, live: LiveEndpoint, config: dict[str, Any], shadows: tuple[LiveVariant, ...]
    ) -> list[LiveVariant]:
        """Install the shadows and the call observers of ``config``; the ones they replace
        are closed in the background. Returns the shadow variants replaced, to retire."""
        replaced, closing = list(live.shadows), live.observers
        live.shadows = shadows
        live.observers = self._observers.build(live, config, shadows) if self._observers else ()
        self._observing[(live.account, live.name.lower())] = live.observers
        self._background(asyncio.gather(*(o.close() for o in closing), return_exceptions=True))
        return replaced

    def _retire(self, variants: list[LiveVariant], delay_s: float = 0.0) -> None:
        """Stop ``variants`` in the background after ``delay_s`` (TerminationWaitInSeconds)."""

        async def retire() -> None:
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            await stop_all(variants)

        if variants:
            self._background(retire())

    def _background(self, work: Awaitable[Any]) -> None:
        future = asyncio.ensure_future(work)
        self._retiring.add(future)
        future.add_done_callback(self._retiring.discard)

    async def _finish_delete(
        self, account: str, record: dict[str, Any], serving: list[LiveVariant]
    ) -> None:
        observers = self._observing.pop((account, record["EndpointName"].lower()), ())
        await asyncio.gather(*(o.close() for o in observers), return_exceptions=True)
        await stop_all(serving)
        self._store.catalog.delete(account, Kind.ENDPOINT.value, record["EndpointName"])

    def _fail(self, account: str, name: str, event: EndpointEvent, reason: str) -> None:
        record = self._record(account, name)
        live = self._directory.get(account, name)
        nothing_serves = live is None or not (live.variants or live.component_based)
        if event is E.UPDATE_FAILED and nothing_serves:
            event = E.DEPLOY_FAILED  # no old fleet to fall back on: the endpoint failed
        record.pop("_pending", None)
        record["FailureReason"] = reason[-MAX_FAILURE_REASON:]
        log.warning("endpoint %s: %s", name, reason)
        self._transition(account, record, event)

    # -- helpers ------------------------------------------------------------------------------

    def _record(self, account: str, name: str) -> dict[str, Any]:
        record = self._store.catalog.get(account, Kind.ENDPOINT.value, name)
        assert record is not None, f"endpoint {name} vanished during its own deployment"
        return record

    def _save(self, account: str, record: dict[str, Any]) -> None:
        self._store.put(account, Kind.ENDPOINT, record["EndpointName"], record)

    def _transition(self, account: str, record: dict[str, Any], event: EndpointEvent) -> None:
        current = S(record["EndpointStatus"])
        try:
            status = advance(current, event)
        except IllegalTransition:
            if event in (E.UPDATE, E.DELETE) and current in IN_PROGRESS:
                raise ResourceConflict(
                    f'Cannot update in-progress endpoint "{record["EndpointArn"]}".'
                ) from None
            raise
        record["EndpointStatus"] = status.value
        record["LastModifiedTime"] = self._store.now()
        self._save(account, record)
        live = self._directory.get(account, record["EndpointName"])
        if live is not None:
            live.status = status

    def _snapshot(
        self, caller: Caller, config_name: str
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """Copy the config and its models: later deletes must not affect a live endpoint."""
        config = self._store.get(caller, Kind.ENDPOINT_CONFIG, config_name)
        models: dict[str, dict[str, Any]] = {}
        for variant in config["ProductionVariants"]:
            model_name = variant.get("ModelName")
            if model_name:  # variants for inference components name none
                models[model_name.lower()] = self._store.get(caller, Kind.MODEL, model_name)
        return config, models
