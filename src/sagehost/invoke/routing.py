"""Choosing where a call goes: a production variant by weight, an instance within it, and the
checks that the routing headers fit the endpoint (§7)."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from sagehost.core.errors import InvalidRequest
from sagehost.core.invocation import InvokeInput
from sagehost.core.live import RANDOM, LiveComponent, LiveEndpoint, LiveVariant, TrafficShift
from sagehost.core.ports import Instance


@dataclass(slots=True)
class Route:
    """Where one call goes. ``variant`` serves it (a production variant or an inference
    component's copies); ``variant_name`` is echoed to the client; ``instance`` is set when a
    session fixes it."""

    endpoint: LiveEndpoint
    variant: LiveVariant
    variant_name: str
    instance: Instance | None = None
    component: LiveComponent | None = None
    target_variant: str | None = None


def choose_variant(endpoint: LiveEndpoint, target: str | None, rng: random.Random) -> LiveVariant:
    """TargetVariant wins over weights, even for a variant of weight 0 (§7.1)."""
    shift = endpoint.shift
    if shift is not None:
        return _during_shift(endpoint, shift, target, rng)
    return _weighted(endpoint, endpoint.variants, endpoint.total_weight, target, rng)


def _weighted(
    endpoint: LiveEndpoint,
    variants: tuple[LiveVariant, ...],
    total: float,
    target: str | None,
    rng: random.Random,
) -> LiveVariant:
    if target is not None:
        for variant in variants:
            if variant.name == target:
                return variant
        raise InvalidRequest(
            f"Variant {target} was not found for endpoint {endpoint.name} of account {endpoint.account}."
        )
    if len(variants) == 1:
        return variants[0]
    if total <= 0:
        raise InvalidRequest(
            f"Endpoint {endpoint.name} of account {endpoint.account} has no variant with a "
            "weight above 0; name one with TargetVariant."
        )
    point = rng.random() * total
    for variant in variants:
        point -= variant.weight
        if point < 0:
            return variant
    return variants[-1]


def _during_shift(
    endpoint: LiveEndpoint, shift: TrafficShift, target: str | None, rng: random.Random
) -> LiveVariant:
    """A blue/green update is moving traffic: the call draws the new fleets (the endpoint's
    variants) with the shift's fraction, else the old ones. A target found on one side only is
    served there, and a side whose chosen variant has no ready instance yields to the other,
    so a new fleet that falls over mid-shift costs no call while the update rolls back."""
    sides = [(endpoint.variants, endpoint.total_weight), (shift.old, shift.total_weight)]
    if rng.random() >= shift.fraction:
        sides.reverse()
    fallback: LiveVariant | None = None
    for variants, total in sides:
        if target is not None and all(v.name != target for v in variants):
            continue
        if target is None and total <= 0 and len(variants) != 1:
            continue
        variant = _weighted(endpoint, variants, total, target, rng)
        if any(instance.ready for instance in variant.fleet.instances):
            return variant
        fallback = fallback or variant
    if fallback is None:  # neither side can serve it: raise the usual error
        return _weighted(endpoint, *sides[0], target, rng)
    return fallback


def choose_instance(
    instances: Iterable[Instance], rng: random.Random, strategy: str | None = None
) -> Instance | None:
    """Least outstanding requests among ready instances, ties broken at random; or, with the
    ``RANDOM`` strategy, any ready instance."""
    if strategy == RANDOM:
        ready = [i for i in instances if i.ready]
        return rng.choice(ready) if ready else None
    best: list[Instance] = []
    fewest = -1
    for instance in instances:
        if not instance.ready:
            continue
        load = instance.outstanding
        if fewest < 0 or load < fewest:
            best = [instance]
            fewest = load
        elif load == fewest:
            best.append(instance)
    if not best:
        return None
    return best[0] if len(best) == 1 else rng.choice(best)


def check_targets(route: Route, request: InvokeInput) -> None:
    """TargetModel and TargetContainerHostname must fit the variant that serves the call."""
    endpoint, variant = route.endpoint, route.variant
    where = f"Endpoint {endpoint.name} of account {endpoint.account}"
    if variant.models is None:
        if request.target_model is not None:
            raise InvalidRequest(f"{where} is not a multi-model endpoint; remove TargetModel.")
    elif request.target_model is None:
        raise InvalidRequest(
            f"{where} is a multi-model endpoint; name the model to invoke with TargetModel."
        )
    hostname = request.target_container_hostname
    if not variant.direct:
        if hostname is not None:
            raise InvalidRequest(
                f"{where} is not a multi-container endpoint in Direct mode; "
                "remove TargetContainerHostname."
            )
        return
    if hostname is None:
        raise InvalidRequest(
            f"{where} invokes its containers in Direct mode; name one with TargetContainerHostname."
        )
    if all(c.hostname != hostname for c in variant.containers):
        raise InvalidRequest(
            f"Container hostname {hostname} was not found for endpoint {endpoint.name} "
            f"of account {endpoint.account}."
        )
