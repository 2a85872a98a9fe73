"""Choosing a production variant by weight, and an instance within it."""

from __future__ import annotations

import random

from sagehost.core.errors import InvalidRequest
from sagehost.core.live import LiveEndpoint, LiveVariant
from sagehost.core.ports import Instance


def choose_variant(endpoint: LiveEndpoint, target: str | None, rng: random.Random) -> LiveVariant:
    """TargetVariant wins over weights, even for a variant of weight 0 (§7.1)."""
    variants = endpoint.variants
    if target is not None:
        for variant in variants:
            if variant.name == target:
                return variant
        raise InvalidRequest(
            f"Variant {target} was not found for endpoint {endpoint.name} of account {endpoint.account}."
        )
    if len(variants) == 1:
        return variants[0]
    total = endpoint.total_weight
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


def choose_instance(instances: object, rng: random.Random) -> Instance | None:
    """Least outstanding requests among ready instances; ties are broken at random."""
    best: list[Instance] = []
    fewest = -1
    for instance in instances:  # type: ignore[attr-defined]
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
