"""Selecting the inference component a call names (§7.5), and scaling one up from zero copies
when a call needs it."""

from __future__ import annotations

import asyncio
import logging

from sagehost.core.errors import InvalidRequest, ModelNotReady
from sagehost.core.invocation import InvokeInput
from sagehost.core.live import LiveComponent, LiveEndpoint
from sagehost.core.ports import Fleet

log = logging.getLogger("sagehost.invoke")

IN_SERVICE = "InService"

# The scale-ups from zero under way, one per fleet however many calls asked for it. Tasks are
# kept here so that they are not collected while they run.
_waking: dict[Fleet, asyncio.Task[None]] = {}


def select_component(endpoint: LiveEndpoint, request: InvokeInput) -> LiveComponent | None:
    """The component named by InferenceComponentName, or None for an endpoint that serves its
    production variants directly.

    A component with no copy ready answers ModelNotReadyException at once while its copies
    are being started (created, or scaled up from zero); one with no copies at all starts one.
    An in-service component whose copies are only restarting is left to the usual wait for a
    ready instance.
    """
    name = request.inference_component
    if name is None:
        if endpoint.component_based:
            raise InvalidRequest(
                f"Endpoint {endpoint.name} of account {endpoint.account} hosts inference "
                "components; name one with InferenceComponentName."
            )
        return None
    component = endpoint.components.get(name.lower())
    if component is None:
        if not endpoint.component_based and not endpoint.components:
            raise InvalidRequest(
                f"Endpoint {endpoint.name} of account {endpoint.account} hosts no inference "
                "components; remove InferenceComponentName."
            )
        raise InvalidRequest(
            f"Inference component {name} was not found for endpoint {endpoint.name} "
            f"of account {endpoint.account}."
        )
    fleet = component.serving.fleet
    instances = fleet.instances
    if not instances:
        _scale_from_zero(fleet)
        raise ModelNotReady(
            f"Inference component {name} of endpoint {endpoint.name} has no copies; one is "
            "being started. Try again in a moment."
        )
    if component.status != IN_SERVICE and not any(i.ready for i in instances):
        raise ModelNotReady(
            f"Inference component {name} of endpoint {endpoint.name} has no copy ready yet "
            f"(status {component.status}). Try again in a moment."
        )
    return component


def _scale_from_zero(fleet: Fleet) -> None:
    """Ask for one copy in the background; the control plane records it as the desired count."""
    if fleet in _waking:
        return
    task = asyncio.get_running_loop().create_task(fleet.scale(1))
    _waking[fleet] = task

    def done(finished: asyncio.Task[None]) -> None:
        _waking.pop(fleet, None)
        if not finished.cancelled() and finished.exception() is not None:
            log.error("scaling up from zero failed", exc_info=finished.exception())

    task.add_done_callback(done)
