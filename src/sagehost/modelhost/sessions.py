"""Stateful sessions (runtime-api.md §7.6): the open sessions of one served model.

A session lives in this worker process only: its ``state`` dict is ordinary Python memory, so it
survives between calls but not a restart. The platform routes every call that names a session to
the instance that opened it, which is what makes process memory enough.

Life of a session:

- ``open``: a call with ``X-Amzn-SageMaker-Session-Id: NEW_SESSION``. The id is random, the expiry
  is a whole second ``ttl`` seconds after the session is registered (fixed: later calls do not
  extend it, so the ``Expires`` the platform was told stays true).
- ``find``: a call naming an id. Unknown, closed and expired ids are all a 400.
- ``close``: ``{"requestType":"CLOSE"}``, or expiry, or the model's unload. The optional hook
  ``close_session_fn`` runs, then ``state`` is cleared.

Consistency: every call of one session runs under the session's ``lock`` (an ``asyncio.Lock``,
so waiting calls hold no worker thread and are served in arrival order). Handlers therefore never
see two calls of the same session at once, whatever ``SAGEMAKER_MODEL_SERVER_WORKERS`` says; calls
of different sessions may run in parallel on different worker threads.

Expiry: the store keeps sessions in registration order, which is expiry order because the TTL is
fixed, so dropping the expired ones costs nothing when none has expired. The manager drops them on
every session call and on a timer set for the next expiry, so an idle process frees them too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sagehost.modelhost.context import Context
from sagehost.modelhost.errors import BadRequestError
from sagehost.modelhost.pipeline import Handler, Pipeline
from sagehost.modelhost.workers import WorkerPool

logger = logging.getLogger("sagehost.modelhost")

#: The session header value that asks for a new session.
NEW_SESSION = "NEW_SESSION"
#: ``requestType`` values of the conventional bodies the runtime answers by itself.
REQUEST_NEW_SESSION = "NEW_SESSION"
REQUEST_CLOSE = "CLOSE"
DEFAULT_TTL_SECONDS = 1200
#: Conventional bodies are tiny; anything longer is the handlers' business and is not parsed.
_MAX_CONVENTION_BODY = 1024


class SessionError(BadRequestError):
    """400: the call names a session this process does not hold (never opened, closed, expired)."""


class Session:
    """What a handler sees as ``context.session``.

    ``session_id`` and ``expires_at`` (an aware UTC datetime) identify it; ``state`` is a dict the
    handlers own, kept for the session's life.
    """

    __slots__ = ("closed", "expires", "lock", "session_id", "state")

    def __init__(self, session_id: str, expires: float) -> None:
        self.session_id = session_id
        #: Expiry as seconds since the epoch (a whole number of seconds).
        self.expires = expires
        self.state: dict[str, Any] = {}
        #: Set once the session stops accepting calls; a call waiting on ``lock`` checks it.
        self.closed = False
        self.lock = asyncio.Lock()

    @property
    def expires_at(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.expires, dt.UTC)

    @property
    def expires_header(self) -> str:
        """``2025-10-22T12:34:56Z``: the ``Expires=`` part of the new-session header."""
        return self.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")

    def __repr__(self) -> str:
        return f"Session({self.session_id!r}, expires={self.expires_header})"


def request_type(body: bytes) -> str | None:
    """The ``requestType`` of a conventional session body (``{"requestType":"CLOSE"}``), else None."""
    if len(body) > _MAX_CONVENTION_BODY or not body.lstrip().startswith(b"{"):
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    kind = parsed.get("requestType") if isinstance(parsed, dict) else None
    return kind if isinstance(kind, str) else None


def unknown_session(session_id: str) -> SessionError:
    return SessionError(
        f"session {session_id!r} does not exist or has expired; "
        f"open a new one with X-Amzn-SageMaker-Session-Id: {NEW_SESSION}"
    )


class SessionStore:
    """Open sessions by id, in expiry order. Pure bookkeeping: the clock is injected."""

    def __init__(
        self,
        ttl_seconds: int,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        if ttl_seconds < 1:
            raise ValueError("a session TTL is at least one second")
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._new_id = new_id
        self._open: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def new(self) -> Session:
        """A session not yet registered (its open hook has not run)."""
        session_id = self._new_id()
        while session_id in self._open:  # 128 random bits: never, but cheap to rule out
            session_id = self._new_id()
        return Session(session_id, self._expiry())

    def add(self, session: Session) -> None:
        """Register ``session``; its life starts now, so the expiry is stamped again."""
        session.expires = self._expiry()
        self._open[session.session_id] = session

    def get(self, session_id: str) -> Session:
        session = self._open.get(session_id)
        if session is None or session.expires <= self._clock():
            raise unknown_session(session_id)
        return session

    def remove(self, session: Session) -> None:
        """Stop accepting calls for ``session``."""
        session.closed = True
        if self._open.get(session.session_id) is session:
            del self._open[session.session_id]

    def pop_expired(self) -> list[Session]:
        now = self._clock()
        expired = []
        while self._open:
            session = next(iter(self._open.values()))
            if session.expires > now:
                break
            self.remove(session)
            expired.append(session)
        return expired

    def pop_all(self) -> list[Session]:
        sessions = list(self._open.values())
        for session in sessions:
            self.remove(session)
        return sessions

    def now(self) -> float:
        return self._clock()

    def next_expiry(self) -> float | None:
        return next(iter(self._open.values())).expires if self._open else None

    def _expiry(self) -> float:
        return float(math.floor(self._clock()) + self.ttl_seconds)


class SessionManager:
    """A ``SessionStore`` plus the handler hooks, run on the worker pool. Event-loop only."""

    def __init__(self, store: SessionStore, pipeline: Pipeline, pool: WorkerPool) -> None:
        self._store = store
        self._pipeline = pipeline
        self._pool = pool
        self._timer: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def store(self) -> SessionStore:
        return self._store

    async def open(self, context: Context) -> Session:
        """Create and register a session, after ``open_session_fn`` (if any) accepted it."""
        self.sweep()
        session = self._store.new()
        context.session = session
        hook = self._pipeline.open_session_fn
        if hook is not None:
            await self._pool.run(hook.call, context, session, self._pipeline.model)
        self._store.add(session)
        self._arm()
        return session

    def find(self, session_id: str) -> Session:
        self.sweep()
        return self._store.get(session_id)

    async def close(self, session: Session, context: Context) -> None:
        """Close ``session``; the caller holds its lock. A failing hook is logged, not raised:
        the session is gone either way, and the platform must hear that it is."""
        self._store.remove(session)
        await self._release(session, context)

    async def close_all(self) -> None:
        """Close every session (the model is being unloaded) and wait for the hooks."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for session in self._store.pop_all():
            self._spawn_close(session)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def sweep(self) -> None:
        for session in self._store.pop_expired():
            self._spawn_close(session)

    def _spawn_close(self, session: Session) -> None:
        task = asyncio.get_running_loop().create_task(self._close_later(session))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_later(self, session: Session) -> None:
        # A call of this session may still be running: the hook waits for it.
        async with session.lock:
            await self._release(session, Context(self._pipeline.model_dir, session=session))

    async def _release(self, session: Session, context: Context) -> None:
        hook: Handler | None = self._pipeline.close_session_fn
        try:
            if hook is not None:
                await self._pool.run(hook.call, context, session, self._pipeline.model)
        except Exception:
            logger.exception("close_session_fn failed for session %s", session.session_id)
        finally:
            session.state.clear()

    def _arm(self) -> None:
        """Keep one timer pending for the earliest expiry while sessions are open."""
        if self._timer is not None:
            return
        expiry = self._store.next_expiry()
        if expiry is None:
            return
        delay = max(0.0, expiry - self._store.now()) + 0.01
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.sweep()
        self._arm()
