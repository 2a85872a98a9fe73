"""One instance of a fleet: a supervised worker process (or a fixed URL) and calls to it.

State machine (only the supervisor task and ``stop``/``invoke`` below change ``_state``)::

    STARTING ──/ping 200──► READY ──exit, 3 failed pings, refused call──► UNHEALTHY
        │                     ▲                                              │
        │                     └───────────────/ping 200──────────────────────┤
        │                                                         exited or unhealthy too long:
        │                                                         restart with backoff (STARTING)
        └──exit or start-up budget spent before the first 200──► FAILED (FailureReason)
    any ──stop()──► STOPPED

Only the first start can fail the deployment; after an instance has once been ready, every
later failure is retried with backoff until the fleet is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sagehost.core.errors import ContainerUnreachable, DeploymentFailed
from sagehost.core.ports import Clock, ContainerRequest, ContainerResponse, ContainerStream
from sagehost.workers.client import ContainerClient
from sagehost.workers.images import Launch
from sagehost.workers.process import WorkerProcess, free_port, port_was_taken, spawn
from sagehost.workers.settings import Backoff, WorkerSettings

logger = logging.getLogger("sagehost.workers")

FAILURE_REASON_LIMIT = 1024  # characters, as AWS limits FailureReason
_PORT_ATTEMPTS = 3


class InstanceState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    UNHEALTHY = "unhealthy"
    FAILED = "failed"
    STOPPED = "stopped"


class _Outcome(enum.Enum):
    READY = "ready"
    EXITED = "exited"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Target:
    """Where an instance runs: a fixed ``url``, or a ``launch`` built for a port and a name."""

    url: str | None = None
    launch: Callable[[int, str], Launch] | None = None


class WorkerInstance:
    """Implements ``core.ports.Instance``; ``start()`` begins supervision, ``stop()`` ends it."""

    def __init__(
        self,
        *,
        instance_id: str,
        hostname: str,
        log_path: Path,
        target: Awaitable[Target],
        client: ContainerClient,
        settings: WorkerSettings,
        clock: Clock,
        startup_timeout_s: float,
        retire: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._id = instance_id
        self._retire = retire
        self._hostname = hostname
        self.log_path = log_path
        self._target = target
        self._client = client
        self._settings = settings
        self._clock = clock
        self._startup_timeout_s = startup_timeout_s
        self._state = InstanceState.STARTING
        self._stopping = False
        self._outstanding = 0
        self._idle: asyncio.Event | None = None
        self._check_now = asyncio.Event()
        self._base_url: str | None = None
        self._process: WorkerProcess | None = None
        self._cleanup: list[str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self.restarts = 0
        #: None once the instance first passed /ping, else the FailureReason.
        self.settled: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    # --- core.ports.Instance ---------------------------------------------------------------------

    @property
    def instance_id(self) -> str:
        return self._id

    @property
    def ready(self) -> bool:
        alive = self._process is None or self._process.returncode is None
        return self._state is InstanceState.READY and alive and not self._stopping

    @property
    def outstanding(self) -> int:
        return self._outstanding

    async def invoke(self, request: ContainerRequest) -> ContainerResponse:
        base_url = self._require_url()
        self._outstanding += 1
        try:
            return await self._client.invoke(base_url, request)
        except ContainerUnreachable:
            self._suspect()
            raise
        finally:
            self._release()

    @asynccontextmanager
    async def invoke_stream(self, request: ContainerRequest) -> AsyncIterator[ContainerStream]:
        """Like ``invoke``, with the body yielded chunk by chunk as the container sends it."""
        base_url = self._require_url()
        self._outstanding += 1
        try:
            async with self._client.stream(base_url, request) as stream:
                yield stream
        except ContainerUnreachable:
            self._suspect()
            raise
        finally:
            self._release()

    # --- introspection ---------------------------------------------------------------------------

    @property
    def state(self) -> InstanceState:
        return self._state

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def base_url(self) -> str | None:
        return self._base_url

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"supervise {self._id}")
        self._task.add_done_callback(self._supervisor_done)

    async def stop(self) -> None:
        """Stop taking calls, let in-flight ones finish within the grace, then end the process."""
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stop_task)

    async def _stop(self) -> None:
        self._stopping = True
        if self._retire is not None:
            # Gateway replicas call instances too: wait until none will call this one again.
            await self._retire()
        if self._outstanding:
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self._settings.stop_grace_s)
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
        await self._stop_process()
        self._state = InstanceState.STOPPED
        self._settle(f"Container {self._hostname} was stopped before it passed the health check.")

    def _require_url(self) -> str:
        if self._base_url is None:
            raise ContainerUnreachable(f"Instance {self._id} is not running.")
        return self._base_url

    def _release(self) -> None:
        self._outstanding -= 1
        if self._outstanding == 0 and self._idle is not None:
            self._idle.set()

    def _suspect(self) -> None:
        """A call could not connect: route elsewhere until the supervisor's ping says otherwise."""
        if self._state is InstanceState.READY:
            self._state = InstanceState.UNHEALTHY
        self._check_now.set()

    def _settle(self, failure: str | None) -> None:
        if not self.settled.done():
            self.settled.set_result(failure)

    def _supervisor_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        # A bug, not a container failure; surface it through wait_ready instead of hanging.
        exc = task.exception()
        logger.error("Supervisor of %s crashed", self._id, exc_info=exc)
        self._state = InstanceState.FAILED
        self._settle(f"Container {self._hostname} could not be supervised: {exc!r}")

    # --- supervision -----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        try:
            target = await asyncio.shield(self._target)
        except DeploymentFailed as exc:
            self._fail(exc.message)
            return
        if target.launch is not None:
            await self._supervise_process(target.launch)
            await self._stop_process()
        elif target.url is not None:
            await self._supervise_url(target.url)

    async def _supervise_url(self, url: str) -> None:
        self._base_url = url
        deadline = self._clock.monotonic() + self._startup_timeout_s
        if await self._await_ping(url, None, deadline) is not _Outcome.READY:
            self._fail(
                f"Container at {url} did not pass the /ping health check within "
                f"{self._startup_timeout_s:g} seconds."
            )
            return
        self._became_ready()
        await self._monitor(url, None)

    async def _supervise_process(self, launch: Callable[[int, str], Launch]) -> None:
        backoff = Backoff(self._settings.restart)
        while not self._stopping:  # a crash while draining is not worth a restart
            if not await self._start(launch):
                if self._state is InstanceState.FAILED:
                    return
                await asyncio.sleep(backoff.next_delay())
                continue
            ready_at = self._clock.monotonic()
            await self._monitor(self._require_url(), self._process)
            self.restarts += 1
            if self._clock.monotonic() - ready_at >= self._settings.restart.reset_after_s:
                backoff.reset()
            delay = backoff.next_delay()
            logger.warning("Instance %s is down; restarting it in %.1f s", self._id, delay)
            await asyncio.sleep(delay)

    async def _start(self, launch: Callable[[int, str], Launch]) -> bool:
        """Spawn the process and wait for its first /ping 200; False if it did not come up."""
        self._state = InstanceState.STARTING
        deadline = self._clock.monotonic() + self._startup_timeout_s
        host = self._settings.bind_host
        for attempt in range(_PORT_ATTEMPTS):
            await self._stop_process()
            if self._retire is not None:
                # A port a crashed instance left may be the next one taken: no gateway replica
                # may still hold it as that instance's address.
                await self._retire()
            port = free_port(host)
            plan = launch(port, f"sagehost-{self._id}-{uuid.uuid4().hex[:8]}")
            try:
                self._process = await spawn(plan.argv, plan.env, self.log_path)
            except OSError as exc:
                return self._start_failed(f"Container {self._hostname} could not start: {exc}.", "")
            self._cleanup = plan.cleanup
            self._base_url = (
                f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
            )
            outcome = await self._await_ping(self._base_url, self._process, deadline)
            if outcome is _Outcome.READY:
                self._became_ready()
                return True
            tail = self._process.log_tail()
            if outcome is _Outcome.TIMEOUT:
                message = (
                    f"Container {self._hostname} did not pass the /ping health check within "
                    f"{self._startup_timeout_s:g} seconds."
                )
                result = self._start_failed(message, tail)
                await self._stop_process()
                return result
            if port_was_taken(tail) and attempt + 1 < _PORT_ATTEMPTS:
                logger.info("Instance %s lost its port %d; retrying on another", self._id, port)
                continue
            status = _describe_exit(self._process.returncode)
            message = f"Container {self._hostname} {status} before it passed the health check."
            return self._start_failed(message, tail)
        raise AssertionError("unreachable")  # the last attempt always returns

    async def _await_ping(
        self, url: str, process: WorkerProcess | None, deadline: float
    ) -> _Outcome:
        # Poll fast at first, then back off: a worker that starts in 100 ms is ready in ~100 ms.
        interval = self._settings.startup_poll_initial_s
        while True:
            if process is not None and process.returncode is not None:
                return _Outcome.EXITED
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                return _Outcome.TIMEOUT
            if await self._client.ping(url, min(self._settings.ping_timeout_s, remaining)):
                return _Outcome.READY
            await self._pause(process, min(interval, remaining), wake_on_check=False)
            interval = min(interval * 1.5, self._settings.startup_poll_max_s)

    async def _monitor(self, url: str, process: WorkerProcess | None) -> None:
        """Ping a ready instance; return when its process must be restarted."""
        settings = self._settings
        failures = 0
        unhealthy_since: float | None = None
        while True:
            ready = self._state is InstanceState.READY
            interval = settings.health_interval_s if ready else settings.startup_poll_max_s
            await self._pause(process, interval, wake_on_check=True)
            if process is not None and process.returncode is not None:
                self._state = InstanceState.UNHEALTHY
                status = _describe_exit(process.returncode)
                logger.warning("Instance %s %s: %s", self._id, status, process.log_tail(512))
                return
            healthy = await self._client.ping(url, settings.ping_timeout_s)
            if process is not None and process.returncode is not None:
                continue  # reported at the top of the loop
            if healthy:
                failures, unhealthy_since = 0, None
                self._state = InstanceState.READY
                continue
            failures += 1
            if failures >= settings.unhealthy_after_failures:
                self._state = InstanceState.UNHEALTHY
            if self._state is InstanceState.UNHEALTHY and process is not None:
                now = self._clock.monotonic()
                unhealthy_since = now if unhealthy_since is None else unhealthy_since
                if now - unhealthy_since >= settings.unhealthy_restart_s:
                    logger.warning("Instance %s stayed unhealthy; restarting it", self._id)
                    await self._stop_process()
                    return

    async def _pause(
        self, process: WorkerProcess | None, timeout: float, *, wake_on_check: bool
    ) -> None:
        """Sleep up to ``timeout``; wake early when the process exits or a call failed."""
        waiters: set[asyncio.Future[Any]] = set()
        wake: asyncio.Task[bool] | None = None
        if process is not None:
            waiters.add(process.exited)
        if wake_on_check:
            wake = asyncio.ensure_future(self._check_now.wait())
            waiters.add(wake)
        try:
            if waiters:
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            else:
                await asyncio.sleep(timeout)
        finally:
            if wake is not None:
                wake.cancel()
        self._check_now.clear()

    def _became_ready(self) -> None:
        self._state = InstanceState.READY
        self._settle(None)
        logger.info("Instance %s is ready at %s", self._id, self._base_url)

    def _fail(self, reason: str) -> None:
        self._state = InstanceState.FAILED
        self._settle(reason)
        logger.warning("Instance %s failed: %s", self._id, reason)

    def _start_failed(self, message: str, tail: str) -> bool:
        reason = failure_reason(message, tail)
        if self.settled.done():
            logger.warning("Instance %s did not restart: %s", self._id, reason)
        else:
            self._fail(reason)
        return False

    async def _stop_process(self) -> None:
        if self._process is not None:
            await self._process.stop(self._settings.stop_grace_s)
        cleanup, self._cleanup = self._cleanup, None
        if cleanup:
            await _run_quietly(cleanup)


def failure_reason(message: str, log_tail: str, limit: int = FAILURE_REASON_LIMIT) -> str:
    """``message`` plus as much of the log's end as fits in ``limit`` characters."""
    prefix = f"{message} Last log lines: "
    room = limit - len(prefix)
    if not log_tail or room < 16:
        return message[:limit]
    if len(log_tail) > room:
        log_tail = "..." + log_tail[-(room - 3) :]
    return prefix + log_tail


def _describe_exit(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"was killed by signal {name}"
    return f"exited with status {returncode}"


async def _run_quietly(argv: list[str]) -> None:
    """Best-effort cleanup (``docker rm``); its failure must not block stopping the fleet."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
    except OSError as exc:
        logger.warning("Cleanup %s could not start: %r", argv, exc)
        return
    try:
        await asyncio.wait_for(proc.wait(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        logger.warning("Cleanup %s did not finish in 30 s", argv)
