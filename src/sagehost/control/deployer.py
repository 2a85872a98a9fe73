"""Turns an endpoint-config snapshot into running fleets, one per production variant."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from sagehost.control.multi_container import (
    DIRECT,
    check_containers,
    execution_mode,
    hostnames,
    is_multi_container,
    launch_fleets,
)
from sagehost.control.multi_model import (
    is_multi_model,
    multi_model_container,
    multi_model_spec,
)
from sagehost.core.errors import DeploymentFailed, InvalidRequest
from sagehost.core.live import LEAST_OUTSTANDING_REQUESTS, LiveContainer, LiveVariant, ModelHost
from sagehost.core.multimodel import ModelHostFactory
from sagehost.core.ports import ContainerSpec, Fleet, FleetSpec, WorkerPool


@dataclass(frozen=True)
class DeploySettings:
    startup_timeout_s: float = 240.0  # SageMaker's default health-check budget
    download_timeout_s: float = 600.0
    # Multi-model variants: budgets (MiB) where the endpoint config sets none, and what builds
    # their model hosts (server.py wires it; without it multi-model endpoints fail to deploy).
    mme_memory_mb: float = 2048.0  # per instance
    mme_disk_mb: float = 10240.0  # per variant
    model_hosts: ModelHostFactory | None = None


def model_containers(model: dict[str, Any]) -> list[dict[str, Any]]:
    """A model's container definitions: its ``Containers``, or its ``PrimaryContainer``."""
    return list(model.get("Containers") or [model["PrimaryContainer"]])


def container_spec(model: dict[str, Any], container: dict[str, Any]) -> ContainerSpec:
    image = container.get("Image")
    if not image:
        raise DeploymentFailed(f"Model {model['ModelName']} names no container Image.")
    data_url = container.get("ModelDataUrl")
    source = (container.get("ModelDataSource") or {}).get("S3DataSource") or {}
    if data_url is None and source.get("S3Uri"):
        data_url = source["S3Uri"]
    return ContainerSpec(
        image=image,
        model_data_url=data_url,
        environment=dict(container.get("Environment") or {}),
        hostname=container.get("ContainerHostname") or "primary",
    )


class Deployer:
    def __init__(self, pool: WorkerPool, settings: DeploySettings) -> None:
        self._pool = pool
        self._settings = settings

    async def deploy(
        self,
        key: str,
        variants: list[dict[str, Any]],
        models: dict[str, dict[str, Any]],
        *,
        tags: list[dict[str, Any]] | None = None,
    ) -> tuple[LiveVariant, ...]:
        """Start every variant's fleets and wait until all are healthy. ``tags`` are the
        endpoint config's (sagehost's own tags tune some variants, e.g. multi-model budgets).

        Variants that name no model (an endpoint for inference components) run nothing here.
        On any failure the fleets already started are stopped, so a failed deployment leaves
        nothing running, and :class:`DeploymentFailed` carries the reason.
        """
        live: list[LiveVariant] = []
        try:
            for variant in variants:
                if not variant.get("ModelName"):
                    continue
                model = models[variant["ModelName"].lower()]
                live.append(
                    await self.launch(
                        f"{key}.{variant['VariantName'].lower()}", variant, model, tags=tags
                    )
                )
            await asyncio.gather(
                *(fleet.wait_ready() for serving in live for fleet in serving.fleets())
            )
        except BaseException:
            await asyncio.gather(*(serving.stop() for serving in live), return_exceptions=True)
            raise
        return tuple(live)

    async def launch(
        self,
        key: str,
        variant: dict[str, Any],
        model: dict[str, Any],
        *,
        tags: list[dict[str, Any]] | None = None,
    ) -> LiveVariant:
        """Start the fleets of one variant (``VariantName``, ``InitialInstanceCount``, …) of
        ``model``, without waiting for them to be ready."""
        containers = model_containers(model)
        if is_multi_container(model):
            try:
                check_containers(model)  # for models stored before CreateModel checked
            except InvalidRequest as error:
                raise DeploymentFailed(error.message) from None
            specs = [
                self.fleet_spec(
                    f"{key}.{hostname.lower()}",
                    variant,
                    replace(container_spec(model, container), hostname=hostname),
                )
                for container, hostname in zip(containers, hostnames(model), strict=True)
            ]
            fleets = await launch_fleets(self._pool, specs)
            return _live_variant(
                variant,
                fleets[0],
                specs[0],
                containers=tuple(
                    LiveContainer(spec.container.hostname, fleet)
                    for spec, fleet in zip(specs, fleets, strict=True)
                ),
                direct=execution_mode(model) == DIRECT,
            )
        if is_multi_model(containers[0]):
            if self._settings.model_hosts is None:
                raise DeploymentFailed(
                    f"Model {model['ModelName']} is a multi-model container, and this server "
                    "was built without multi-model support."
                )
            defined = container_spec(model, containers[0])
            spec = self.fleet_spec(key, variant, multi_model_container(model, defined))
            fleet = await self._pool.launch(spec)
            return _live_variant(
                variant,
                fleet,
                spec,
                models=self._settings.model_hosts(
                    multi_model_spec(
                        key,
                        containers[0],
                        defined,
                        memory_mb=self._settings.mme_memory_mb,
                        disk_mb=self._settings.mme_disk_mb,
                        tags=tags,
                    ),
                    fleet,
                ),
            )
        spec = self.fleet_spec(key, variant, container_spec(model, containers[0]))
        return _live_variant(variant, await self._pool.launch(spec), spec)

    def fleet_spec(self, key: str, variant: dict[str, Any], container: ContainerSpec) -> FleetSpec:
        return FleetSpec(
            key=key,
            container=container,
            instance_count=int(variant.get("InitialInstanceCount") or 1),
            startup_timeout_s=float(
                variant.get("ContainerStartupHealthCheckTimeoutInSeconds")
                or self._settings.startup_timeout_s
            ),
            download_timeout_s=float(
                variant.get("ModelDataDownloadTimeoutInSeconds")
                or self._settings.download_timeout_s
            ),
        )


def _live_variant(
    variant: dict[str, Any],
    fleet: Fleet,
    spec: FleetSpec,
    *,
    containers: tuple[LiveContainer, ...] = (),
    direct: bool = False,
    models: ModelHost | None = None,
) -> LiveVariant:
    """What serves ``variant``: ``fleet``, launched from ``spec``, runs its (first) container;
    the keywords are set for multi-container and multi-model variants."""
    return LiveVariant(
        name=variant["VariantName"],
        weight=float(variant.get("InitialVariantWeight", 1.0)),
        fleet=fleet,
        container=spec.container.hostname,
        routing=routing_strategy(variant),
        containers=containers,
        direct=direct,
        models=models,
    )


def routing_strategy(variant: dict[str, Any]) -> str:
    routing: dict[str, Any] = variant.get("RoutingConfig") or {}
    return str(routing.get("RoutingStrategy", LEAST_OUTSTANDING_REQUESTS))
