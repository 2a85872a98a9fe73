"""Turns an endpoint-config snapshot into running fleets, one per production variant."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sagehost.core.errors import DeploymentFailed
from sagehost.core.live import LEAST_OUTSTANDING_REQUESTS, LiveVariant
from sagehost.core.ports import ContainerSpec, FleetSpec, WorkerPool


@dataclass(frozen=True)
class DeploySettings:
    startup_timeout_s: float = 240.0  # SageMaker's default health-check budget
    download_timeout_s: float = 600.0


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
    ) -> tuple[LiveVariant, ...]:
        """Start every variant's fleets and wait until all are healthy.

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
                    await self.launch(f"{key}-{variant['VariantName'].lower()}", variant, model)
                )
            await asyncio.gather(
                *(fleet.wait_ready() for serving in live for fleet in serving.fleets())
            )
        except BaseException:
            await asyncio.gather(*(serving.stop() for serving in live), return_exceptions=True)
            raise
        return tuple(live)

    async def launch(self, key: str, variant: dict[str, Any], model: dict[str, Any]) -> LiveVariant:
        """Start the fleets of one variant (``VariantName``, ``InitialInstanceCount``, …) of
        ``model``, without waiting for them to be ready."""
        containers = model_containers(model)
        if len(containers) > 1:
            raise DeploymentFailed(
                f"Model {model['ModelName']} has {len(containers)} containers; "
                "multi-container endpoints are not supported by this sagehost version."
            )
        if containers[0].get("Mode") == "MultiModel":
            raise DeploymentFailed(
                f"Model {model['ModelName']} is a multi-model container; "
                "multi-model endpoints are not supported by this sagehost version."
            )
        spec = self.fleet_spec(key, variant, container_spec(model, containers[0]))
        fleet = await self._pool.launch(spec)
        return LiveVariant(
            name=variant["VariantName"],
            weight=float(variant.get("InitialVariantWeight", 1.0)),
            fleet=fleet,
            container=spec.container.hostname,
            routing=routing_strategy(variant),
        )

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


def routing_strategy(variant: dict[str, Any]) -> str:
    routing: dict[str, Any] = variant.get("RoutingConfig") or {}
    return str(routing.get("RoutingStrategy", LEAST_OUTSTANDING_REQUESTS))
