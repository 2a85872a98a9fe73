"""Starting the fleets of one endpoint deployment: its production variants and its shadow
variants, from a snapshot of the endpoint config and its models."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sagehost.control.context import Store
from sagehost.control.deployer import Deployer
from sagehost.control.traffic import shadow_sampling
from sagehost.core.errors import DeploymentFailed
from sagehost.core.live import LiveVariant
from sagehost.core.resources import Kind


@dataclass(frozen=True)
class Fleets:
    """What one deployment started: the production variants and the shadow variants."""

    variants: tuple[LiveVariant, ...]
    shadows: tuple[LiveVariant, ...]


async def launch_fleets(
    deployer: Deployer,
    store: Store,
    account: str,
    name: str,
    generation: int,
    snapshot: dict[str, Any],
) -> Fleets:
    """Deploy the snapshot's variants; raise ``DeploymentFailed`` (or anything else) with
    nothing left running."""
    config = snapshot["_config"]
    # "." and "_" appear in no resource name, so no two fleets ever share a key (and with it
    # their log and model directories).
    key = f"{account}.{name.lower()}.g{generation}"
    shadows = shadow_variants(store, account, snapshot)
    outcomes = await asyncio.gather(
        deployer.deploy(
            key, config["ProductionVariants"], snapshot["_models"], tags=config.get("Tags")
        ),
        deployer.deploy(f"{key}_shadow", shadows, snapshot["_models"], tags=config.get("Tags")),
        return_exceptions=True,
    )
    started = [o for o in outcomes if isinstance(o, tuple)]
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            await stop_all(v for group in started for v in group)
            raise outcome
    variants, shadow_fleets = started
    for shadow in shadow_fleets:
        spec = next(s for s in shadows if s["VariantName"] == shadow.name)
        shadow.sampling = shadow_sampling(spec, config["ProductionVariants"])
    return Fleets(variants, shadow_fleets)


def shadow_variants(store: Store, account: str, snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """The config's ShadowProductionVariants, their models added to the snapshot (and kept in
    it, so DescribeEndpoint and a restart see them) the first time it is deployed."""
    shadows = list(snapshot["_config"].get("ShadowProductionVariants") or [])
    models = snapshot["_models"]
    for shadow in shadows:
        model_name = shadow.get("ModelName")
        if not model_name:
            raise DeploymentFailed(f"Shadow variant {shadow['VariantName']} names no model.")
        if model_name.lower() not in models:
            model = store.catalog.get(account, Kind.MODEL.value, model_name)
            if model is None:
                raise DeploymentFailed(
                    f"Could not find model {model_name} of shadow variant {shadow['VariantName']}."
                )
            models[model_name.lower()] = model
    return shadows


async def stop_all(variants: Iterable[LiveVariant]) -> None:
    await asyncio.gather(*(variant.stop() for variant in variants), return_exceptions=True)
