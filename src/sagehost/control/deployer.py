"""Turns an endpoint-config snapshot into running fleets, one per production variant."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sagehost.core.errors import DeploymentFailed
from sagehost.core.live import LiveVariant
from sagehost.core.ports import ContainerSpec, Fleet, FleetSpec, WorkerPool


@dataclass(frozen=True)
class DeploySettings:
    startup_timeout_s: float = 240.0  # SageMaker's default health-check budget
    download_timeout_s: float = 600.0


def container_spec(model: dict[str, Any]) -> ContainerSpec:
    """The container a single-container model runs; multi-container models are refused here."""
    containers = model.get("Containers")
    if containers:
        if len(containers) > 1:
            raise DeploymentFailed(
                f"Model {model['ModelName']} has {len(containers)} containers; "
                "multi-container endpoints are not supported by this sagehost version."
            )
        container = containers[0]
    else:
        container = model["PrimaryContainer"]
    if container.get("Mode") == "MultiModel":
        raise DeploymentFailed(
            f"Model {model['ModelName']} is a multi-model container; "
            "multi-model endpoints are not supported by this sagehost version."
        )
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
        """Start every variant's fleet and wait until all are healthy.

        On any failure the fleets already started are stopped, so a failed deployment leaves
        nothing running, and :class:`DeploymentFailed` carries the reason.
        """
        started: list[Fleet] = []
        live: list[LiveVariant] = []
        try:
            for variant in variants:
                model = models[variant["ModelName"].lower()]
                spec = FleetSpec(
                    key=f"{key}-{variant['VariantName'].lower()}",
                    container=container_spec(model),
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
                fleet = await self._pool.launch(spec)
                started.append(fleet)
                live.append(
                    LiveVariant(
                        name=variant["VariantName"],
                        weight=float(variant.get("InitialVariantWeight", 1.0)),
                        fleet=fleet,
                        container=spec.container.hostname,
                    )
                )
            await asyncio.gather(*(fleet.wait_ready() for fleet in started))
        except BaseException:
            await asyncio.gather(*(fleet.stop() for fleet in started), return_exceptions=True)
            raise
        return tuple(live)
