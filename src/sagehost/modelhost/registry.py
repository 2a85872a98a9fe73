"""The models a multi-model container holds: loading, single-flight, unloading.

Loads run on their own thread pool (``loader``), never on the invocation pool and never on the
event loop, so ``/ping`` and calls to loaded models go on while a slow ``model_fn`` runs. Each
model's handler module is imported in isolation (``isolation.py``).

Concurrency rules (all state lives on the event loop; only user code runs in threads):

- Two loads of one name load once: the later request waits for the first, then answers 409 if
  the model loaded, or the first load's own error if it failed.
- A call for a name whose load is still running is a 404: the model is not loaded yet.
- An unload takes the model out of the table first (new calls get 404), waits for the calls in
  flight (streams included), closes its sessions, then calls ``model_unload_fn`` and drops every
  reference the runtime holds, including the handler module, before it answers. An unload of a
  name whose load is running waits for that load to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import threading
import time

from sagehost.modelhost.context import Context
from sagehost.modelhost.errors import ModelsApiError, status_and_message
from sagehost.modelhost.invocations import ServedModel
from sagehost.modelhost.isolation import forget_module
from sagehost.modelhost.loader import load_isolated_pipeline
from sagehost.modelhost.pipeline import Pipeline
from sagehost.modelhost.sessions import SessionManager, SessionStore
from sagehost.modelhost.workers import WorkerPool

logger = logging.getLogger("sagehost.modelhost")

NOT_FOUND = "ModelNotFoundException"
CONFLICT = "ConflictStatusException"
INSUFFICIENT_MEMORY = "InsufficientMemoryException"
LOAD_FAILED = "ModelLoadException"


def model_dir(url: str) -> str:
    """The directory a load request's ``url`` names: a path, or a ``file://`` URL."""
    return url.removeprefix("file://")


def not_loaded(name: str) -> ModelsApiError:
    return ModelsApiError(404, NOT_FOUND, f"model {name!r} is not loaded")


class ModelRegistry:
    """Loaded models by name (the platform's opaque ``model_name``)."""

    def __init__(
        self,
        *,
        pool: WorkerPool,
        loader: WorkerPool,
        module_name: str,
        default_accept: str,
        session_ttl_seconds: int | None = None,
    ) -> None:
        self._pool = pool
        self._loader = loader
        self._module_name = module_name
        self._default_accept = default_accept
        self._session_ttl = session_ttl_seconds
        self._models: dict[str, ServedModel] = {}
        self._loading: dict[str, asyncio.Task[ServedModel]] = {}
        self._import_lock = threading.Lock()
        self._keys = itertools.count(1)

    def get(self, name: str) -> ServedModel | None:
        return self._models.get(name)

    def names(self) -> list[str]:
        return sorted(self._models)

    async def load(self, name: str, url: str) -> ServedModel:
        """Load ``url`` as ``name``; ModelsApiError 409 if loaded, or the load's failure."""
        if name in self._models:
            raise _conflict(name)
        task = self._loading.get(name)
        if task is not None:
            await asyncio.shield(task)
            raise _conflict(name)
        task = asyncio.ensure_future(self._load(name, url))
        self._loading[name] = task

        def done(_: object) -> None:
            if self._loading.get(name) is task:
                del self._loading[name]

        task.add_done_callback(done)
        # Shielded: a request that goes away must not cancel a load other requests wait for.
        return await asyncio.shield(task)

    async def unload(self, name: str) -> None:
        task = self._loading.get(name)
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)
        model = self._models.pop(name, None)
        if model is None:
            raise not_loaded(name)
        await model.drained()
        if model.sessions is not None:
            await model.sessions.close_all()
        await self._loader.run(_release, model)
        logger.info("model %r unloaded", name)

    async def _load(self, name: str, url: str) -> ServedModel:
        key = f"sagehost_model_{next(self._keys)}_{self._module_name.replace('.', '_')}"
        started = time.monotonic()
        try:
            pipeline = await self._loader.run(
                _load_blocking,
                model_dir(url),
                self._module_name,
                key,
                self._default_accept,
                self._import_lock,
            )
        except Exception as exc:
            raise _load_error(name, exc) from exc
        sessions = None
        if self._session_ttl is not None:
            sessions = SessionManager(SessionStore(self._session_ttl), pipeline, self._pool)
        model = ServedModel(pipeline, sessions, name=name, url=url, module_key=key)
        self._models[name] = model
        logger.info("model %r loaded from %s in %.2f s", name, url, time.monotonic() - started)
        return model


def _load_blocking(
    url: str, module_name: str, key: str, default_accept: str, lock: threading.Lock
) -> Pipeline:
    try:
        return load_isolated_pipeline(url, module_name, key, default_accept, lock)
    except (SystemExit, KeyboardInterrupt) as exc:
        # Raised on the event loop, these would stop the whole server for one model's failure.
        raise RuntimeError(f"loading the model raised {type(exc).__name__}") from exc


def _release(model: ServedModel) -> None:
    """Runs on a loader thread, once no call uses the model."""
    pipeline = model.pipeline
    try:
        hook = pipeline.model_unload_fn
        if hook is not None:
            hook.call(Context(pipeline.model_dir), pipeline.model)
    except Exception:
        logger.exception("model_unload_fn of model %r failed", model.name)
    finally:
        pipeline.model = None
        forget_module(model.module_key)
        # Models are big and often hold reference cycles (framework modules): free them now,
        # so that the memory is back when DELETE answers, as the contract says.
        gc.collect()


def _conflict(name: str) -> ModelsApiError:
    return ModelsApiError(409, CONFLICT, f"model {name!r} is already loaded")


def _load_error(name: str, exc: Exception) -> ModelsApiError:
    described = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, MemoryError):
        logger.warning("model %r does not fit in memory: %s", name, described)
        return ModelsApiError(507, INSUFFICIENT_MEMORY, f"loading model {name!r}: {described}")
    status, _ = status_and_message(exc)
    logger.error("loading model %r failed", name, exc_info=exc)
    return ModelsApiError(status, LOAD_FAILED, f"loading model {name!r} failed: {described}")
