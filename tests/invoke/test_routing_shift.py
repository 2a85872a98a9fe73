"""choose_variant while a blue/green update moves traffic (``LiveEndpoint.shift``)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sagehost.core.endpoint_states import EndpointStatus
from sagehost.core.errors import InvalidRequest
from sagehost.core.live import LiveEndpoint, LiveVariant, TrafficShift
from sagehost.invoke.routing import choose_variant
from sagehost.testing.fakes import FakeFleet, FakeInstance


def variant(name: str, weight: float = 1.0, *, ready: bool = True) -> LiveVariant:
    return LiveVariant(name=name, weight=weight, fleet=FakeFleet(FakeInstance("i", ready=ready)))


def endpoint(
    new: tuple[LiveVariant, ...], old: tuple[LiveVariant, ...], fraction: float
) -> LiveEndpoint:
    live = LiveEndpoint("000000000000", "ep", "us-east-1", EndpointStatus.UPDATING)
    live.shift = TrafficShift(old, fraction)
    live.set_variants(new)
    return live


def draws(live: LiveEndpoint, target: str | None = None, n: int = 4000) -> Counter[str]:
    rng = random.Random(11)
    return Counter(choose_variant(live, target, rng).name for _ in range(n))


def test_the_fraction_splits_untargeted_calls_between_new_and_old() -> None:
    counts = draws(endpoint((variant("Green"),), (variant("Blue"),), 0.25))
    assert 0.22 <= counts["Green"] / 4000 <= 0.28, counts
    assert set(counts) == {"Green", "Blue"}


def test_weights_apply_within_each_side() -> None:
    live = endpoint(
        (variant("G1", 1.0), variant("G2", 3.0)), (variant("B1"), variant("B2", 0.0)), 0.5
    )
    counts = draws(live)
    assert counts["B2"] == 0
    assert 0.45 <= counts["B1"] / 4000 <= 0.55, counts
    assert 2.4 <= counts["G2"] / counts["G1"] <= 3.7, counts


def test_a_target_is_found_on_either_side() -> None:
    live = endpoint((variant("Green"),), (variant("Blue"),), 0.5)
    assert draws(live, "Blue", 200) == Counter({"Blue": 200})
    assert draws(live, "Green", 200) == Counter({"Green": 200})
    with pytest.raises(InvalidRequest) as missing:
        choose_variant(live, "Red", random.Random(1))
    assert missing.value.message == (
        "Variant Red was not found for endpoint ep of account 000000000000."
    )


def test_a_side_with_no_ready_instance_yields_to_the_other() -> None:
    down = endpoint((variant("Green", ready=False),), (variant("Blue"),), 0.9)
    assert draws(down, n=500) == Counter({"Blue": 500})
    # The last baking step (everything on the new side) still falls back to the old fleets.
    baking = endpoint((variant("Green", ready=False),), (variant("Blue"),), 1.0)
    assert draws(baking, n=100) == Counter({"Blue": 100})
    # Nothing ready anywhere: the drawn side keeps the call (it waits for an instance there).
    nothing = endpoint((variant("Green", ready=False),), (variant("Blue", ready=False),), 1.0)
    assert draws(nothing, n=100) == Counter({"Green": 100})


def test_no_shift_is_plain_weighted_choice() -> None:
    live = LiveEndpoint("000000000000", "ep", "us-east-1", EndpointStatus.IN_SERVICE)
    live.set_variants((variant("A"), variant("B", 0.0)))
    assert draws(live, n=300) == Counter({"A": 300})
