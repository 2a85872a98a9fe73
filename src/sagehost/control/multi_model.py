"""Deploying a multi-model container (``Mode: MultiModel``, §7.3): its fleet starts with no
model data and ``SAGEMAKER_MULTI_MODEL=true``; the variant's ``ModelDataUrl`` becomes the
prefix its ``TargetModel``s are loaded from, on demand, by the variant's model host."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sagehost.control.endpoint_configs import multi_model_budgets
from sagehost.core.errors import DeploymentFailed
from sagehost.core.multimodel import MIB, MultiModelSpec
from sagehost.core.ports import ContainerSpec

MULTI_MODEL = "MultiModel"
MULTI_MODEL_ENV = "SAGEMAKER_MULTI_MODEL"  # §8.5


def is_multi_model(container: Mapping[str, Any]) -> bool:
    return container.get("Mode") == MULTI_MODEL


def multi_model_container(model: Mapping[str, Any], spec: ContainerSpec) -> ContainerSpec:
    """The container the fleet runs: no model at start, and told it serves several."""
    if not spec.model_data_url:
        raise DeploymentFailed(
            f"Model {model['ModelName']} is a multi-model container and names no ModelDataUrl: "
            "set it to the prefix (s3://, file:// or a directory) the TargetModels are below."
        )
    environment = {**spec.environment, MULTI_MODEL_ENV: "true"}
    return replace(spec, model_data_url=None, environment=environment)


def multi_model_spec(
    key: str,
    container: Mapping[str, Any],
    spec: ContainerSpec,
    *,
    memory_mb: float,
    disk_mb: float,
    tags: list[dict[str, Any]] | None = None,
) -> MultiModelSpec:
    """What the variant's model host needs: ``spec`` is the container as its model defines it
    (with the prefix); the budgets (MiB) are the server's defaults, which the endpoint
    config's ``tags`` may override."""
    assert spec.model_data_url is not None  # multi_model_container() checked it
    tagged_memory_mb, tagged_disk_mb = multi_model_budgets(tags or [])
    setting = (container.get("MultiModelConfig") or {}).get("ModelCacheSetting", "Enabled")
    return MultiModelSpec(
        key=key,
        prefix=spec.model_data_url,
        container=spec.hostname,
        memory_budget=int((tagged_memory_mb or memory_mb) * MIB),
        disk_budget=int((tagged_disk_mb or disk_mb) * MIB),
        cache_models=setting != "Disabled",
    )
