"""Stateful sessions (§7.6): which instance holds each open session."""

from __future__ import annotations

from collections.abc import Mapping

from sagehost.core.errors import InvalidRequest
from sagehost.core.invocation import InvokeInput
from sagehost.core.ports import Clock, Instance
from sagehost.invoke.routing import Route

NEW_SESSION = "NEW_SESSION"


class SessionTable:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def pin(self, route: Route, request: InvokeInput) -> None:
        """Send a call that names an open session to the instance holding it."""
        session = request.session_id
        if session is not None and session != NEW_SESSION:
            raise InvalidRequest(f"Session {session} is not an open session.")

    def observe(
        self,
        route: Route,
        request: InvokeInput,
        instance: Instance,
        headers: Mapping[str, str],
    ) -> None:
        """Record a session the container opened, or forget one it closed."""
