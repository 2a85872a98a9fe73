"""Multi-container models (§7.4): the rules their ``Containers`` follow, and their fleets.

A model whose ``Containers`` list holds more than one container (or that asks for Direct
invocation) runs one fleet per container; every instance of every container listens on a
port of its own, given to it as ``SAGEMAKER_BIND_TO_PORT``. ``InferenceExecutionConfig.Mode``
says how calls reach them: ``Serial`` (the default) through every container in order,
``Direct`` to the container named by TargetContainerHostname.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sagehost.core.errors import InvalidRequest
from sagehost.core.ports import Fleet, FleetSpec, WorkerPool

MAX_CONTAINERS = 15
SERIAL = "Serial"
DIRECT = "Direct"
MULTI_MODEL = "MultiModel"


def execution_mode(model: dict[str, Any]) -> str:
    return str((model.get("InferenceExecutionConfig") or {}).get("Mode") or SERIAL)


def is_multi_container(model: dict[str, Any]) -> bool:
    containers = model.get("Containers")
    if not containers:
        return False
    return len(containers) > 1 or execution_mode(model) == DIRECT


def default_hostname(position: int) -> str:
    """sagehost's name for the container at ``position`` (0-based) of a model that names
    none. AWS also names them by position but does not document how."""
    return f"container-{position + 1}"


def hostnames(model: dict[str, Any]) -> list[str]:
    """Every container's hostname, in pipeline order."""
    return [
        container.get("ContainerHostname") or default_hostname(position)
        for position, container in enumerate(model.get("Containers") or [])
    ]


def check_containers(model: dict[str, Any]) -> None:
    """Refuse (``InvalidRequest``) a model whose ``Containers`` cannot be deployed."""
    containers: list[dict[str, Any]] = model.get("Containers") or []
    if not containers:
        return
    name = model["ModelName"]
    if len(containers) > MAX_CONTAINERS:
        raise InvalidRequest(
            f"Model {name} has {len(containers)} containers; a model may have at most "
            f"{MAX_CONTAINERS}."
        )
    mode = execution_mode(model)
    if mode not in (SERIAL, DIRECT):
        raise InvalidRequest(
            f"InferenceExecutionConfig.Mode of model {name} must be {SERIAL} or {DIRECT}, "
            f"not {mode}."
        )
    named = [c.get("ContainerHostname") for c in containers]
    if mode == DIRECT and not all(named):
        raise InvalidRequest(
            f"Model {name} invokes its containers in {DIRECT} mode, so every container "
            "needs a ContainerHostname."
        )
    if any(named) and not all(named):
        raise InvalidRequest(
            f"Either every container of model {name} has a ContainerHostname or none does."
        )
    seen: set[str] = set()
    for hostname in named:
        if hostname and hostname.lower() in seen:
            raise InvalidRequest(
                f"ContainerHostname {hostname} names more than one container of model {name}."
            )
        seen.add(str(hostname).lower())
    multi_model = sum(1 for c in containers if c.get("Mode") == MULTI_MODEL)
    if multi_model > 1:
        raise InvalidRequest(
            f"Model {name} has {multi_model} containers in {MULTI_MODEL} mode; a "
            "multi-container model may have at most one."
        )
    if multi_model and len(containers) > 1:
        raise InvalidRequest(
            f"Model {name} has a container in {MULTI_MODEL} mode among others; sagehost does "
            "not support multi-model containers in a multi-container model yet. Deploy it as "
            "a model of its own."
        )


async def launch_fleets(pool: WorkerPool, specs: list[FleetSpec]) -> list[Fleet]:
    """Launch one fleet per spec; if one cannot be launched, stop those already launched."""
    fleets: list[Fleet] = []
    try:
        for spec in specs:
            fleets.append(await pool.launch(spec))
    except BaseException:
        await asyncio.gather(*(fleet.stop() for fleet in fleets), return_exceptions=True)
        raise
    return fleets
