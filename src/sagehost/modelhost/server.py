"""Start-up, serving and shutdown of one modelhost process.

Order of events:

1. Bind the listening socket first, so a busy port fails at once and the loader never starts.
2. Submit the model load to the worker pool, so with the default single worker ``model_fn`` runs
   on the same thread as every later ``predict_fn`` (some frameworks keep per-thread state).
3. Serve. ``/ping`` answers 503 until the load finishes, then 200.
4. A failed load prints its traceback to stderr (the container log that the platform quotes in
   FailureReason) and asks uvicorn to stop; ``run`` then returns 1.
In multi-model mode (``SAGEMAKER_MULTI_MODEL=true``) step 2 is skipped: ``/ping`` answers 200 at
once, and models are loaded by ``POST /models`` on a separate loader pool (``registry.py``).

5. SIGTERM/SIGINT: uvicorn stops accepting, lets in-flight requests finish (at most
   ``graceful_shutdown_seconds``), restores the previous handlers and re-raises the signal, so
   the process ends the way the signal says, even if the loader is still busy in user code.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
import traceback

import uvicorn

from sagehost.modelhost.app import ModelHostApp
from sagehost.modelhost.invocations import Invocations
from sagehost.modelhost.loader import load_pipeline
from sagehost.modelhost.multimodel import MultiModelApp
from sagehost.modelhost.registry import ModelRegistry
from sagehost.modelhost.settings import LOAD_THREADS, Settings
from sagehost.modelhost.workers import WorkerPool

logger = logging.getLogger("sagehost.modelhost")


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket; IPv4 or IPv6 as ``host`` says."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def run(settings: Settings) -> int:
    """Serve until a signal or a failed load; returns the process exit status."""
    try:
        sock = bind_socket(settings.host, settings.port)
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        return 1
    if settings.multi_model:
        return _run_multi_model(settings, sock)
    pool = WorkerPool(settings.workers)
    app = ModelHostApp(
        pool=pool,
        model_dir=settings.model_dir,
        default_accept=settings.default_accept,
        max_payload_bytes=settings.max_payload_bytes,
        session_ttl_seconds=settings.session_ttl_seconds,
    )
    server = uvicorn.Server(_config(app, settings))
    failed = threading.Event()
    started = time.monotonic()

    def load() -> None:
        try:
            pipeline = load_pipeline(
                settings.model_dir, settings.module_name, settings.default_accept
            )
        except BaseException as exc:
            failed.set()
            print("modelhost: loading the model failed", file=sys.stderr)
            traceback.print_exception(exc, file=sys.stderr)
            sys.stderr.flush()
            server.should_exit = True
            return
        app.set_ready(pipeline)
        logger.info("model loaded in %.2f s", time.monotonic() - started)

    host, port = sock.getsockname()[:2]
    logger.info("modelhost listening on %s:%d, model dir %s", host, port, settings.model_dir)
    pool.call_soon(load)
    try:
        server.run(sockets=[sock])
    finally:
        pool.shutdown()
        sock.close()
    return 1 if failed.is_set() else 0


def _run_multi_model(settings: Settings, sock: socket.socket) -> int:
    pool = WorkerPool(settings.workers)
    loader = WorkerPool(LOAD_THREADS, name="modelhost-loader")
    registry = ModelRegistry(
        pool=pool,
        loader=loader,
        module_name=settings.module_name,
        default_accept=settings.default_accept,
        session_ttl_seconds=settings.session_ttl_seconds,
    )
    invocations = Invocations(
        pool, default_accept=settings.default_accept, max_payload_bytes=settings.max_payload_bytes
    )
    app = MultiModelApp(registry=registry, invocations=invocations)
    host, port = sock.getsockname()[:2]
    logger.info("modelhost listening on %s:%d in multi-model mode", host, port)
    try:
        uvicorn.Server(_config(app, settings)).run(sockets=[sock])
    finally:
        loader.shutdown()
        pool.shutdown()
        sock.close()
    return 0


def _config(app: ModelHostApp | MultiModelApp, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        # Nothing here reads the client's address: rewriting it from X-Forwarded-For on every
        # request would cost each call for nothing.
        proxy_headers=False,
        timeout_keep_alive=settings.keep_alive_seconds,
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
    )
