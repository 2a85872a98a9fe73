"""A small thread pool that hands results straight to asyncio futures.

``loop.run_in_executor`` costs a ``concurrent.futures.Future`` (with its condition variable), a
work item, and a chain of callbacks that copies the result into an asyncio future. On the
invocation hot path that was most of modelhost's own time per request, so this pool takes
``(future, fn, args)`` from a ``SimpleQueue`` and resolves the asyncio future with a single
``call_soon_threadsafe``. The ``size`` threads start with the pool and are daemons: a
process that is exiting must not wait for user code stuck in a prediction (the shutdown path in
``server.py`` already waited for in-flight requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[
    asyncio.AbstractEventLoop | None,
    asyncio.Future[Any] | None,
    Callable[..., Any],
    tuple[Any, ...],
]


class WorkerPool:
    """``await pool.run(fn, *args)`` runs ``fn(*args)`` on one of ``size`` worker threads."""

    def __init__(self, size: int, name: str = "modelhost-worker") -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one thread")
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Schedule ``fn(*args)``; the returned future resolves on the calling event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, fn, args))
        return future

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on a worker and drop its result; ``fn`` handles its own errors."""
        self._jobs.put((None, None, fn, args))

    def shutdown(self) -> None:
        """Each thread exits after the jobs queued before this call."""
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        jobs = self._jobs
        while (job := jobs.get()) is not None:
            loop, future, fn, args = job
            del job  # keep no reference to the arguments while waiting for the next job
            try:
                result = fn(*args)
            except BaseException as exc:
                if loop is not None:
                    _resolve(loop, _set_exception, future, exc)
            else:
                if loop is not None:
                    _resolve(loop, _set_result, future, result)
            del loop, future, fn, args


def _resolve(
    loop: asyncio.AbstractEventLoop,
    setter: Callable[[Any, Any], None],
    future: asyncio.Future[Any] | None,
    value: Any,
) -> None:
    # RuntimeError: the loop has closed, so nobody is waiting for this result any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(setter, future, value)


def _set_result(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # the awaiting task may have been cancelled meanwhile
        future.set_result(result)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
