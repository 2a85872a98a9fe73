"""The async job runner: claims queued jobs within each endpoint's concurrency cap, runs them
against the model, writes each result or error, and publishes notifications.

Delivery is at least once. A result is written before its job is marked Completed, and the
output name depends only on the request, so a job run twice (after a crash) writes the same
object twice. Every status change is the store's, through ``core.job_states``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from sagehost.core.chunks import read_capped
from sagehost.core.endpoint_states import INVOCABLE
from sagehost.core.errors import (
    ContainerTimeout,
    ContainerUnreachable,
    DependencyFailed,
    InvalidRequest,
    ModelFailed,
    NoHealthyInstance,
    SagehostError,
)
from sagehost.core.job_states import JobStatus, LeaseLost
from sagehost.core.live import EndpointDirectory, LiveEndpoint
from sagehost.core.ports import Clock, EndpointModels, Job, JobStore, Notifier, ObjectStore
from sagehost.jobs import messages
from sagehost.jobs.submit import error_location

log = logging.getLogger("sagehost.jobs")

DEFAULT_CONCURRENCY_PER_INSTANCE = 4
MAX_INPUT_BYTES = 1024**3  # 1 GB, as on AWS
ERROR_BODY_LIMIT = 1024 * 1024


class JobRunner:
    def __init__(
        self,
        *,
        store: JobStore,
        objects: ObjectStore,
        notifier: Notifier,
        models: EndpointModels,
        directory: EndpointDirectory,
        clock: Clock,
        lease_s: float = 60.0,
        poll_s: float = 1.0,
        retention_s: float | None = None,
    ) -> None:
        """``retention_s``: how long a finished job's record is kept (None: for ever)."""
        self._store = store
        self._objects = objects
        self._notifier = notifier
        self._models = models
        self._directory = directory
        self._clock = clock
        self._lease_s = lease_s
        self._poll_s = poll_s
        self._retention_s = retention_s
        self._wake = asyncio.Event()
        self._in_flight: dict[tuple[str, str], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._last_backlog: dict[tuple[str, str], int] = {}
        # The AsyncInferenceConfig each endpoint was last announced with (TestNotification).
        self._announced: dict[tuple[str, str], int] = {}

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        # Whatever was Running when the server stopped has no runner now: run it again.
        while True:
            changed = await self._store.recover(self._clock.time(), startup=True)
            for job in changed:
                if job.status is JobStatus.FAILED:
                    self._spawn(self._finish_failed(job, job.failure_reason or "", None, None))
            if not changed:
                break
        self._loop_task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop claiming; jobs in flight are abandoned and run again after the next start."""
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _loop(self) -> None:
        housekeeping_due = 0.0
        while True:
            self._wake.clear()
            try:
                for endpoint in self._directory.all():
                    if endpoint.async_config is not None and endpoint.status in INVOCABLE:
                        self._announce(endpoint)
                        await self._fill(endpoint)
                # Expiry, lost leases and the backlog log line once per poll interval, not on
                # every wake-up: a busy endpoint wakes the loop once per finished job.
                if self._clock.monotonic() >= housekeeping_due:
                    housekeeping_due = self._clock.monotonic() + self._poll_s
                    await self._housekeeping()
            except Exception:
                log.exception("async job runner pass failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)

    def _announce(self, endpoint: LiveEndpoint) -> None:
        """Publish SageMaker's TestNotification to the topics of an endpoint that just went
        into service with a new async configuration (after a create, an update, or a restart
        of sagehost), as AWS does on CreateEndpoint and UpdateEndpoint."""
        key = (endpoint.account, endpoint.name)
        marker = id(endpoint.async_config)
        if self._announced.get(key) == marker:
            return
        self._announced[key] = marker
        topics = {_topic(endpoint, which, "")[0] for which in ("SuccessTopic", "ErrorTopic")}
        for topic in topics - {None}:
            assert topic is not None
            self._spawn(self._publish(topic, messages.test_notification()))

    async def _housekeeping(self) -> None:
        now = self._clock.time()
        for job in [*await self._store.expire_queued(now), *await self._store.recover(now)]:
            if job.status is JobStatus.FAILED:
                self._spawn(self._finish_failed(job, job.failure_reason or "", None, None))
        for endpoint in self._directory.all():
            if endpoint.async_config is not None:
                await self._report_backlog(endpoint)
        if self._retention_s is not None:
            # One bounded batch per pass: a large backlog of old records drains over passes.
            purged = await self._store.purge_finished(now - self._retention_s)
            if purged:
                log.info("forgot %d finished async jobs older than the retention", purged)

    async def _fill(self, endpoint: LiveEndpoint) -> None:
        key = (endpoint.account, endpoint.name)
        assert endpoint.async_config is not None
        client = endpoint.async_config.get("ClientConfig") or {}
        per_instance = int(
            client.get("MaxConcurrentInvocationsPerInstance") or DEFAULT_CONCURRENCY_PER_INSTANCE
        )
        free = per_instance * self._models.capacity(*key) - self._in_flight.get(key, 0)
        if free > 0:
            jobs = await self._store.claim(*key, free, self._lease_s, self._clock.time())
            for job in jobs:
                self._in_flight[key] = self._in_flight.get(key, 0) + 1
                self._spawn(self._run(job, endpoint))

    async def _report_backlog(self, endpoint: LiveEndpoint) -> None:
        key = (endpoint.account, endpoint.name)
        backlog = await self._store.backlog(*key)
        queued = backlog[JobStatus.QUEUED]
        if queued != self._last_backlog.get(key, 0):
            self._last_backlog[key] = queued
            log.info(
                "endpoint %s (account %s): %d queued, %d running",
                endpoint.name,
                endpoint.account,
                queued,
                backlog[JobStatus.RUNNING],
            )

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: Job, endpoint: LiveEndpoint) -> None:
        key = (job.account, job.endpoint_name)
        renewer = asyncio.get_running_loop().create_task(self._renew(job))
        try:
            await self._attempt(job, endpoint)
        except LeaseLost:
            log.info("job %s was taken over; dropping this attempt", job.job_id)
        except Exception:
            log.exception("job %s failed inside sagehost", job.job_id)
            with contextlib.suppress(Exception):
                await self._requeue(job)
        finally:
            renewer.cancel()
            self._in_flight[key] -= 1
            self._wake.set()

    async def _attempt(self, job: Job, endpoint: LiveEndpoint) -> None:
        try:
            info = await self._objects.stat(job.input_location)
            if info.size > MAX_INPUT_BYTES:
                await self._failed(
                    job, f"ValidationError: the input is larger than {MAX_INPUT_BYTES} bytes."
                )
                return
            # Streamed to the container as it is read, never held whole: inputs reach 1 GB.
            body = _checked_input(self._objects.read(job.input_location), info.size)
        except SagehostError as error:
            await self._failed(job, f"DependencyFailed: {error.message}")
            return
        headers = [
            (name, value)
            for name, value in (
                ("Content-Type", job.content_type),
                ("Accept", job.accept),
                ("X-Amzn-SageMaker-Custom-Attributes", job.custom_attributes),
                ("X-Amzn-SageMaker-Inference-Id", job.inference_id),
            )
            if value is not None
        ]
        try:
            async with self._models.call(
                job.account,
                job.endpoint_name,
                body,
                headers,
                job.invocation_timeout_s,
                body_length=info.size,
            ) as stream:
                content_type = stream.headers.get("content-type")
                if 200 <= stream.status < 300:
                    kept = _Tee(stream.chunks, messages.MAX_EMBEDDED_RESPONSE)
                    await self._objects.write(job.output_location, kept, content_type)
                    await self._succeeded(job, endpoint, content_type, kept.kept())
                    return
                error_body = await read_capped(stream.chunks, ERROR_BODY_LIMIT)
                kind = "client" if stream.status < 500 else "server"
                reason = (
                    f"ClientError: Received {kind} error ({stream.status}) from model. "
                    "See the sagehost log of the endpoint for more information."
                )
                await self._failed(job, reason, error_body, content_type)
        except ContainerTimeout:
            await self._failed(
                job,
                f"ModelError: The invocation did not finish within {job.invocation_timeout_s:g} seconds "
                "(InvocationTimeoutSeconds).",
            )
        except (ContainerUnreachable, NoHealthyInstance) as error:
            log.warning("job %s lost its worker (%s); queueing it again", job.job_id, error.message)
            await self._requeue(job)
        except ModelFailed as error:  # a container of a pipeline failed before the last one
            await self._failed(job, f"ModelError: {error.message}")
        except InvalidRequest as error:  # the endpoint cannot take this job (Direct mode, …)
            await self._failed(job, f"ValidationError: {error.message}")
        except _InputFailed as failed:
            await self._failed(job, f"DependencyFailed: {failed.error.message}")
        finally:
            await body.aclose()

    async def _succeeded(
        self, job: Job, endpoint: LiveEndpoint, content_type: str | None, embedded: bytes | None
    ) -> None:
        done = await self._store.complete(
            job.job_id, content_type, self._clock.time(), attempt=job.attempts
        )
        topic, include = _topic(endpoint, "SuccessTopic", "SUCCESS_NOTIFICATION_TOPIC")
        if topic:
            await self._publish(
                topic,
                messages.success(
                    done,
                    endpoint.region,
                    self._clock.time(),
                    content_type,
                    embedded if include else None,
                ),
            )

    async def _failed(
        self, job: Job, reason: str, body: bytes | None = None, content_type: str | None = None
    ) -> None:
        # The error object is written before the job is marked Failed, as a result is before
        # Completed: whoever sees the status can read the object.
        await self._write_error(job, reason, body, content_type)
        done = await self._store.fail(job.job_id, reason, self._clock.time(), attempt=job.attempts)
        await self._notify_failed(done, reason, body, content_type)

    async def _finish_failed(
        self, job: Job, reason: str, body: bytes | None, content_type: str | None
    ) -> None:
        """Write the error and notify for a job the store itself failed (expiry, attempts)."""
        await self._write_error(job, reason, body, content_type)
        await self._notify_failed(job, reason, body, content_type)

    async def _write_error(
        self, job: Job, reason: str, body: bytes | None, content_type: str | None
    ) -> None:
        try:
            await self._objects.write(
                error_location(job), body if body else reason.encode(), content_type or "text/plain"
            )
        except SagehostError as error:
            log.warning("job %s: could not write its error: %s", job.job_id, error.message)

    async def _notify_failed(
        self, job: Job, reason: str, body: bytes | None, content_type: str | None
    ) -> None:
        endpoint = self._directory.get(job.account, job.endpoint_name)
        if endpoint is None:
            return
        topic, include = _topic(endpoint, "ErrorTopic", "ERROR_NOTIFICATION_TOPIC")
        if topic:
            embedded = (
                body
                if include and body is not None and len(body) <= messages.MAX_EMBEDDED_RESPONSE
                else None
            )
            await self._publish(
                topic,
                messages.failure(
                    job, endpoint.region, self._clock.time(), reason, content_type, embedded
                ),
            )

    async def _requeue(self, job: Job) -> None:
        again = await self._store.requeue(job.job_id, self._clock.time(), attempt=job.attempts)
        if again.status is JobStatus.FAILED:
            await self._finish_failed(again, again.failure_reason or "", None, None)

    async def _publish(self, topic: str, message: str) -> None:
        # Notifications are best effort, as on AWS: the job's result is already stored.
        try:
            await self._notifier.publish(topic, message)
        except SagehostError as error:
            log.warning("notification to %s failed: %s", topic, error.message)

    async def _renew(self, job: Job) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            await self._store.renew(
                job.job_id, self._clock.time() + self._lease_s, attempt=job.attempts
            )


def _topic(endpoint: LiveEndpoint, which: str, include_key: str) -> tuple[str | None, bool]:
    config = endpoint.async_config or {}
    notification = (config.get("OutputConfig") or {}).get("NotificationConfig") or {}
    include = include_key in (notification.get("IncludeInferenceResponseIn") or [])
    return notification.get(which), include


class _Tee:
    """Passes chunks through while keeping the first ``limit`` bytes for a notification."""

    def __init__(self, chunks: AsyncIterator[bytes], limit: int) -> None:
        self._chunks = chunks
        self._limit = limit
        self._kept: list[bytes] = []
        self._size = 0

    def __aiter__(self) -> _Tee:
        return self

    async def __anext__(self) -> bytes:
        chunk = await anext(self._chunks)
        if self._size <= self._limit:
            self._kept.append(chunk[: self._limit + 1 - self._size])
        self._size += len(chunk)
        return chunk

    def kept(self) -> bytes | None:
        """The whole response if it fits the limit, else None."""
        return b"".join(self._kept) if self._size <= self._limit else None


class _InputFailed(Exception):
    """The job's input could not be read while it was being sent: the job fails with
    ``error``. Not a ``SagehostError`` nor an ``OSError``, so that on its way out of the model
    call it is not taken for the container's failure."""

    def __init__(self, error: SagehostError) -> None:
        super().__init__(error.message)
        self.error = error


async def _checked_input(chunks: AsyncIterator[bytes], size: int) -> AsyncGenerator[bytes, None]:
    """``chunks``, which must come to ``size`` bytes (what ``stat`` said) in all; raises
    ``_InputFailed`` if reading fails or the object changed meanwhile. Closes ``chunks``."""
    seen = 0
    try:
        async for chunk in chunks:
            seen += len(chunk)
            if seen > size:
                raise DependencyFailed("The input changed while it was being read.")
            yield chunk
        if seen != size:
            raise DependencyFailed("The input changed while it was being read.")
    except SagehostError as error:
        raise _InputFailed(error) from error
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()  # stops a read-ahead thread at once, not at garbage collection
