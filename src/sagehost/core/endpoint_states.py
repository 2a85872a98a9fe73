"""The endpoint status machine: the one place that decides which status follows which.

Only ``control.endpoints`` calls :func:`advance`; everything else reads ``EndpointStatus``.
Transitions marked (sagehost) are our own choices where AWS documents none.
"""

from __future__ import annotations

from enum import StrEnum


class EndpointStatus(StrEnum):
    OUT_OF_SERVICE = "OutOfService"
    CREATING = "Creating"
    UPDATING = "Updating"
    SYSTEM_UPDATING = "SystemUpdating"
    ROLLING_BACK = "RollingBack"
    IN_SERVICE = "InService"
    DELETING = "Deleting"
    FAILED = "Failed"
    UPDATE_ROLLBACK_FAILED = "UpdateRollbackFailed"


class EndpointEvent(StrEnum):
    DEPLOYED = "deployed"  # every variant passed its health check
    DEPLOY_FAILED = "deploy_failed"  # a variant never became healthy
    UPDATE = "update"  # UpdateEndpoint / UpdateEndpointWeightsAndCapacities accepted
    UPDATE_DONE = "update_done"
    UPDATE_FAILED = "update_failed"  # new fleet failed; the old one keeps serving
    DELETE = "delete"
    RESTORE = "restore"  # the server restarted and is bringing the fleet back (sagehost)


S = EndpointStatus
E = EndpointEvent

_TRANSITIONS: dict[tuple[EndpointStatus, EndpointEvent], EndpointStatus] = {
    (S.CREATING, E.DEPLOYED): S.IN_SERVICE,
    (S.CREATING, E.DEPLOY_FAILED): S.FAILED,
    (S.IN_SERVICE, E.UPDATE): S.UPDATING,
    (
        S.FAILED,
        E.UPDATE,
    ): S.UPDATING,  # (sagehost) AWS leaves this undocumented; allow a fix-forward
    (S.UPDATING, E.UPDATE_DONE): S.IN_SERVICE,
    (S.UPDATING, E.UPDATE_FAILED): S.IN_SERVICE,  # (sagehost) old fleet kept, FailureReason set
    # (sagehost) an update of a Failed endpoint failed too: no old fleet serves, so it stays Failed
    (S.UPDATING, E.DEPLOY_FAILED): S.FAILED,
    (S.SYSTEM_UPDATING, E.DEPLOYED): S.IN_SERVICE,
    (S.SYSTEM_UPDATING, E.DEPLOY_FAILED): S.FAILED,
    (S.IN_SERVICE, E.DELETE): S.DELETING,
    (S.FAILED, E.DELETE): S.DELETING,
    (S.OUT_OF_SERVICE, E.DELETE): S.DELETING,
    (S.UPDATE_ROLLBACK_FAILED, E.DELETE): S.DELETING,
}

# On restart every persisted endpoint that had (or was getting) a fleet is brought back.
_RESTORABLE = {S.CREATING, S.IN_SERVICE, S.UPDATING, S.SYSTEM_UPDATING, S.ROLLING_BACK}

INVOCABLE = frozenset({S.IN_SERVICE, S.UPDATING, S.SYSTEM_UPDATING, S.ROLLING_BACK})
IN_PROGRESS = frozenset({S.CREATING, S.UPDATING, S.SYSTEM_UPDATING, S.ROLLING_BACK, S.DELETING})


class IllegalTransition(Exception):
    def __init__(self, status: EndpointStatus, event: EndpointEvent) -> None:
        super().__init__(f"{event.value} is not allowed while the endpoint is {status.value}")
        self.status = status
        self.event = event


def advance(status: EndpointStatus, event: EndpointEvent) -> EndpointStatus:
    """The status after ``event``; raises :class:`IllegalTransition` if the event cannot happen now."""
    if event is E.RESTORE:
        if status in _RESTORABLE:
            # Creating stays Creating: the create never finished. Everything else was serving.
            return S.CREATING if status is S.CREATING else S.SYSTEM_UPDATING
        raise IllegalTransition(status, event)
    try:
        return _TRANSITIONS[(status, event)]
    except KeyError:
        raise IllegalTransition(status, event) from None
