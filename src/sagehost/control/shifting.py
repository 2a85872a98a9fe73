"""Walking a blue/green :class:`~sagehost.control.traffic.Schedule` on the live routing table.

``control/endpoints.py`` calls :func:`shift_traffic` once the new fleets are healthy; the
schedule's steps set ``LiveEndpoint.shift``, which ``invoke/routing.choose_variant`` reads.
"""

from __future__ import annotations

import asyncio
import logging

from sagehost.control.traffic import ALL_AT_ONCE, Schedule
from sagehost.core.live import LiveEndpoint, LiveVariant, TrafficShift

log = logging.getLogger("sagehost.control")


class NewFleetUnhealthy(Exception):
    """A new variant lost every healthy instance while traffic moved to it."""


async def shift_traffic(live: LiveEndpoint, new: tuple[LiveVariant, ...], plan: Schedule) -> None:
    """Move the untargeted traffic from the live variants to ``new`` step by step, holding
    each step for its baking period.

    Until the last baking period ends the old variants stay in the table, to serve whatever
    a new variant with no ready instance cannot. AutoRollback alarms cannot be evaluated here,
    so a new variant left with no healthy instance at the end of a step stands in for one:
    :class:`NewFleetUnhealthy` is raised and the caller rolls back.
    """
    old = live.variants
    for step in plan.steps:
        # The shift is set before the swap, so a call never sees the new variants alone early.
        live.shift = TrafficShift(old, step.fraction)
        live.set_variants(new)
        if plan.kind != ALL_AT_ONCE or step.hold_s:
            log.info(
                "endpoint %s: %g%% of the traffic on the new fleets for %g s",
                live.name,
                round(step.fraction * 100, 2),
                step.hold_s,
            )
        if step.hold_s > 0:
            await asyncio.sleep(step.hold_s)
            for variant in new:
                if not all(any(i.ready for i in f.instances) for f in variant.fleets()):
                    raise NewFleetUnhealthy(
                        f"Variant {variant.name} of the new configuration has no healthy "
                        "instance; the update was rolled back"
                    )
    live.shift = None


def roll_back(live: LiveEndpoint, old: tuple[LiveVariant, ...]) -> None:
    """Give all traffic back to the old variants at once."""
    live.shift = None
    live.set_variants(old)
