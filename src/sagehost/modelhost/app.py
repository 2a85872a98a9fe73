"""The single-model ASGI application: ``GET /ping`` and ``POST /invocations``.

A raw ASGI callable: routing is two string comparisons, and the call itself is
``invocations.Invocations``. ``multimodel.py`` is the multi-model counterpart.
"""

from __future__ import annotations

from sagehost.modelhost.asgi import (
    EMPTY_BODY,
    PING_READY,
    Receive,
    Scope,
    Send,
    send_error,
    send_text,
)
from sagehost.modelhost.errors import ModelNotReadyError
from sagehost.modelhost.invocations import Invocations, ServedModel
from sagehost.modelhost.pipeline import Pipeline
from sagehost.modelhost.sessions import SessionManager, SessionStore
from sagehost.modelhost.workers import WorkerPool
from sagehost.protocol.container import INVOCATIONS_PATH, PING_PATH


class ModelHostApp:
    """Serves one model. It answers 503 until ``set_ready`` hands it the loaded pipeline.

    ``session_ttl_seconds`` enables stateful sessions (None: the session header is only passed to
    the handlers, as any other header).
    """

    def __init__(
        self,
        *,
        pool: WorkerPool,
        model_dir: str,
        default_accept: str,
        max_payload_bytes: int,
        session_ttl_seconds: int | None = None,
    ) -> None:
        self._pool = pool
        self._model_dir = model_dir
        self._session_ttl = session_ttl_seconds
        self._invocations = Invocations(
            pool, default_accept=default_accept, max_payload_bytes=max_payload_bytes
        )
        self._model: ServedModel | None = None

    def set_ready(self, pipeline: Pipeline) -> None:
        """Called from the loading thread; one attribute store, so no lock is needed."""
        sessions = None
        if self._session_ttl is not None:
            sessions = SessionManager(SessionStore(self._session_ttl), pipeline, self._pool)
        self._model = ServedModel(pipeline, sessions, url=self._model_dir)

    @property
    def ready(self) -> bool:
        return self._model is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        method = scope["method"]
        if path == INVOCATIONS_PATH:
            if method != "POST":
                await send_text(send, 405, "method not allowed", [(b"allow", b"POST")])
            elif self._model is None:
                await send_error(send, ModelNotReadyError("model is loading"))
            else:
                await self._invocations(self._model, scope, receive, send)
        elif path == PING_PATH:
            if method != "GET":
                await send_text(send, 405, "method not allowed", [(b"allow", b"GET")])
            elif self._model is not None:
                await send(PING_READY)
                await send(EMPTY_BODY)
            else:
                await send_text(send, 503, "model is loading")
        else:
            await send_text(send, 404, "not found")
