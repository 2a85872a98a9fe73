"""Stateful sessions (§7.6): which instance holds each open session.

The container, not sagehost, makes a session: a ``NEW_SESSION`` call is routed like any
other, and the container's answer names the new id and its expiry. The table maps that id to
the instance that answered, so every later call naming the id (response streams included)
goes there. A ``Closed-Session-Id`` answer or the expiry ends the mapping.

Ids are scoped to the (account, endpoint) that opened them: no other endpoint or account can
use one. The table is bounded: each endpoint holds at most ``max_per_endpoint`` open sessions
(expired ones are swept when it fills), and every ``sweep_every`` new sessions all expired
entries are dropped, so endpoints deleted with sessions open do not hold memory forever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sagehost.core.errors import InvalidRequest, NoHealthyInstance
from sagehost.core.invocation import InvokeInput
from sagehost.core.live import LiveComponent, LiveEndpoint, LiveVariant
from sagehost.core.ports import Clock, Instance
from sagehost.invoke.routing import Route

NEW_SESSION = "NEW_SESSION"
NEW_SESSION_HEADER = "x-amzn-sagemaker-new-session-id"
# DJL/LMI containers name a new session with the request header's name instead (§7.6).
SESSION_HEADER = "x-amzn-sagemaker-session-id"
CLOSED_SESSION_HEADER = "x-amzn-sagemaker-closed-session-id"
# AWS containers' own default, used when a container names no (readable) expiry.
DEFAULT_TTL_S = 1200.0
MAX_PER_ENDPOINT = 10_000
SWEEP_EVERY = 1_000


@dataclass(slots=True)
class Session:
    variant: LiveVariant
    variant_name: str
    component: LiveComponent | None
    instance: Instance
    expires_at: float  # epoch seconds


class SessionTable:
    def __init__(
        self,
        clock: Clock,
        *,
        max_per_endpoint: int = MAX_PER_ENDPOINT,
        default_ttl_s: float = DEFAULT_TTL_S,
        sweep_every: int = SWEEP_EVERY,
    ) -> None:
        self._clock = clock
        self._max = max_per_endpoint
        self._default_ttl_s = default_ttl_s
        self._sweep_every = sweep_every
        self._tables: dict[tuple[str, str], dict[str, Session]] = {}
        self._opened_since_sweep = 0

    def __len__(self) -> int:
        return sum(len(table) for table in self._tables.values())

    def pin(self, route: Route, request: InvokeInput) -> None:
        """Send a call that names an open session to the instance (and variant) holding it.

        Raises ``InvalidRequest`` for an id that is unknown, expired, or whose instance has
        stopped, and ``NoHealthyInstance`` while that instance is not ready.
        """
        session_id = request.session_id
        if session_id is None:
            return
        endpoint = route.endpoint
        if session_id == NEW_SESSION:
            _check_supported(route)
            self._make_room(endpoint)
            return
        table = self._tables.get(_key(endpoint))
        session = table.get(session_id) if table is not None else None
        where = f"endpoint {endpoint.name} of account {endpoint.account}"
        if table is None or session is None:
            raise InvalidRequest(f"Session {session_id} is not an open session of {where}.")
        if self._clock.time() >= session.expires_at:
            del table[session_id]
            raise InvalidRequest(
                f"Session {session_id} of {where} expired at {_iso(session.expires_at)}; "
                f"open a new one with {NEW_SESSION}."
            )
        if not _still_serving(endpoint, session):
            del table[session_id]
            raise InvalidRequest(
                f"The instance that held session {session_id} of {where} has stopped; "
                f"open a new session with {NEW_SESSION}."
            )
        owner = session.component.name if session.component is not None else None
        asked = route.component.name if route.component is not None else None
        if owner != asked:
            raise InvalidRequest(
                f"Session {session_id} of {where} belongs to "
                + (f"inference component {owner}" if owner else "no inference component")
                + "; call it with the same InferenceComponentName."
            )
        if route.target_variant is not None and route.target_variant != session.variant_name:
            raise InvalidRequest(
                f"Session {session_id} of {where} is served by variant {session.variant_name}, "
                f"not by TargetVariant {route.target_variant}."
            )
        if not session.instance.ready:
            raise NoHealthyInstance(
                f"The instance that holds session {session_id} of {where} is not healthy "
                "right now. Try again later."
            )
        route.variant = session.variant
        route.variant_name = session.variant_name
        route.instance = session.instance

    def observe(
        self,
        route: Route,
        request: InvokeInput,
        instance: Instance,
        headers: Mapping[str, str],
    ) -> None:
        """Record a session the container opened, or forget one it closed.

        ``headers`` are the container's (lower-case names) from a 2xx answer of ``instance``.
        """
        closed = headers.get(CLOSED_SESSION_HEADER)
        if closed is not None:
            self._close(route.endpoint, _session_id(closed), instance)
        opened = new_session_header(request, headers)
        if opened is not None:
            self._open(route, instance, opened)

    def _open(self, route: Route, instance: Instance, header: str) -> None:
        """Record the session a ``NEW_SESSION`` call opened. Concurrent ``NEW_SESSION`` calls
        all pass the check in ``pin``, so the cap is enforced again here: over it, the caller
        gets the same ``NoHealthyInstance`` and the container's session is left to expire."""
        session_id = _session_id(header)
        if not session_id:
            return
        expires_at = _expiry(header)
        if expires_at is None:
            expires_at = self._clock.time() + self._default_ttl_s
        table = self._tables.get(_key(route.endpoint))
        if table is None or session_id not in table:
            self._make_room(route.endpoint)
        table = self._tables.setdefault(_key(route.endpoint), {})
        table[session_id] = Session(
            route.variant, route.variant_name, route.component, instance, expires_at
        )
        self._opened_since_sweep += 1
        if self._opened_since_sweep >= self._sweep_every:
            self._sweep()

    def _close(self, endpoint: LiveEndpoint, session_id: str, instance: Instance) -> None:
        table = self._tables.get(_key(endpoint))
        if table is None:
            return
        session = table.get(session_id)
        # Only the instance holding a session may close it.
        if session is not None and session.instance is instance:
            del table[session_id]

    def _make_room(self, endpoint: LiveEndpoint) -> None:
        table = self._tables.get(_key(endpoint))
        if table is None or len(table) < self._max:
            return
        now = self._clock.time()
        for session_id in [s for s, v in table.items() if now >= v.expires_at]:
            del table[session_id]
        for session_id in [s for s, v in table.items() if not _still_serving(endpoint, v)]:
            del table[session_id]
        if len(table) >= self._max:
            raise NoHealthyInstance(
                f"Endpoint {endpoint.name} of account {endpoint.account} has {len(table)} open "
                "sessions, the most sagehost keeps per endpoint. Close a session or wait for "
                "one to expire, then try again."
            )

    def _sweep(self) -> None:
        self._opened_since_sweep = 0
        now = self._clock.time()
        for key, table in list(self._tables.items()):
            for session_id in [s for s, v in table.items() if now >= v.expires_at]:
                del table[session_id]
            if not table:
                del self._tables[key]


def new_session_header(request: InvokeInput, headers: Mapping[str, str]) -> str | None:
    """The container's ``New-Session-Id`` answer to a ``NEW_SESSION`` call, which is what the
    client is sent as ``X-Amzn-SageMaker-New-Session-Id``; a DJL-style
    ``X-Amzn-SageMaker-Session-Id`` answer counts too. On any other call such a header opens
    nothing: sagehost would not route the id, so it is not passed on either."""
    if request.session_id != NEW_SESSION:
        return None
    opened = headers.get(NEW_SESSION_HEADER)
    if opened is None:
        opened = headers.get(SESSION_HEADER)
    return opened


def _check_supported(route: Route) -> None:
    variant = route.variant
    kind = (
        "multi-model"
        if variant.models is not None
        else "multi-container"
        if variant.containers
        else None
    )
    if kind is not None:
        endpoint = route.endpoint
        raise InvalidRequest(
            f"Variant {route.variant_name} of endpoint {endpoint.name} of account "
            f"{endpoint.account} serves a {kind} model; sagehost supports stateful sessions "
            "only on single-container models."
        )


def _still_serving(endpoint: LiveEndpoint, session: Session) -> bool:
    """Whether the session's variant still takes calls and its instance is still part of it;
    an update or a restart replaces both, and a deleted endpoint's vanish."""
    variant = session.variant
    if session.component is not None:
        current = endpoint.components.get(session.component.name)
        serving = current is not None and current.serving is variant
    else:
        old = endpoint.shift.old if endpoint.shift is not None else ()
        serving = any(v is variant for v in (*endpoint.variants, *old))
    return serving and any(i is session.instance for i in variant.fleet.instances)


def _key(endpoint: LiveEndpoint) -> tuple[str, str]:
    return endpoint.account, endpoint.name.lower()


def _session_id(header: str) -> str:
    return header.split(";", 1)[0].strip()


def _expiry(header: str) -> float | None:
    """The ``Expires=YYYY-MM-DDTHH:MM:SSZ`` of a session header, in epoch seconds.

    None when there is none or it is unreadable, which includes a time whose UTC equivalent
    falls outside the years 1-9999 (``0001-01-01T00:00:00+05:00``): normalised here, every
    kept expiry can be printed back in the expired-session error.
    """
    for part in header.split(";")[1:]:
        name, _, value = part.partition("=")
        if name.strip().lower() != "expires":
            continue
        try:
            moment = datetime.fromisoformat(value.strip())
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            epoch = moment.astimezone(UTC).timestamp()
            datetime.fromtimestamp(epoch, UTC)
        except (ValueError, OverflowError, OSError):
            return None
        return epoch
    return None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
