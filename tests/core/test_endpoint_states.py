"""The endpoint status machine: every allowed transition, and a refusal for the rest."""

from __future__ import annotations

import pytest

from sagehost.core.endpoint_states import (
    EndpointEvent as E,
)
from sagehost.core.endpoint_states import (
    EndpointStatus as S,
)
from sagehost.core.endpoint_states import (
    IllegalTransition,
    advance,
)


@pytest.mark.parametrize(
    ("status", "event", "after"),
    [
        (S.CREATING, E.DEPLOYED, S.IN_SERVICE),
        (S.CREATING, E.DEPLOY_FAILED, S.FAILED),
        (S.IN_SERVICE, E.UPDATE, S.UPDATING),
        (S.FAILED, E.UPDATE, S.UPDATING),
        (S.UPDATING, E.UPDATE_DONE, S.IN_SERVICE),
        (S.UPDATING, E.UPDATE_FAILED, S.IN_SERVICE),
        (S.UPDATING, E.DEPLOY_FAILED, S.FAILED),
        (S.SYSTEM_UPDATING, E.DEPLOYED, S.IN_SERVICE),
        (S.SYSTEM_UPDATING, E.DEPLOY_FAILED, S.FAILED),
        (S.IN_SERVICE, E.DELETE, S.DELETING),
        (S.FAILED, E.DELETE, S.DELETING),
        (S.CREATING, E.RESTORE, S.CREATING),
        (S.IN_SERVICE, E.RESTORE, S.SYSTEM_UPDATING),
        (S.UPDATING, E.RESTORE, S.SYSTEM_UPDATING),
    ],
)
def test_allowed(status: S, event: E, after: S) -> None:
    assert advance(status, event) is after


@pytest.mark.parametrize(
    ("status", "event"),
    [
        (S.CREATING, E.UPDATE),
        (S.UPDATING, E.UPDATE),
        (S.UPDATING, E.DELETE),
        (S.DELETING, E.DELETE),
        (S.FAILED, E.RESTORE),
        (S.IN_SERVICE, E.DEPLOYED),
    ],
)
def test_refused(status: S, event: E) -> None:
    with pytest.raises(IllegalTransition) as error:
        advance(status, event)
    assert str(error.value) == f"{event.value} is not allowed while the endpoint is {status.value}"
