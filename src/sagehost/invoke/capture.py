"""Data capture: a ``CallObserver`` that samples an endpoint's calls and writes them, batched,
as SageMaker data-capture JSON Lines through the ``ObjectStore`` (``s3://`` or ``file://``).

The call itself only appends the sampled bodies to an in-memory batch; formatting and writing
happen in one background task per endpoint, which wakes every ``flush_interval_s`` or when a
batch reaches ``max_batch_bytes``, and once more on close. Memory is bounded: past
``max_pending_bytes`` of unwritten captures, new ones are dropped and counted, never queued.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from dataclasses import dataclass, field

from sagehost.core.invocation import InvokeInput, InvokeOutput
from sagehost.core.ports import Clock, ObjectStore
from sagehost.invoke.capture_format import (
    CaptureSettings,
    capture_record,
    encode_line,
    hour_prefix,
    object_url,
)

log = logging.getLogger("sagehost.capture")

CONTENT_TYPE = "application/jsonl"
# Closing writers' final flushes: the event loop keeps only weak references to tasks, and a
# writer whose closer was cancelled may have no other owner while its last batch is written.
_final_flushes: set[asyncio.Task[None]] = set()


@dataclass(slots=True)
class _Captured:
    request: InvokeInput
    response: InvokeOutput
    when: float
    event_id: str


@dataclass(slots=True)
class _Batch:
    first: float  # time of the first record: names the object
    calls: list[_Captured] = field(default_factory=list)
    size: int = 0


class CaptureWriter:
    """Implements ``core.live.CallObserver`` for one endpoint's DataCaptureConfig."""

    def __init__(
        self,
        endpoint_name: str,
        settings: CaptureSettings,
        objects: ObjectStore,
        clock: Clock,
        *,
        rng: random.Random | None = None,
        flush_interval_s: float = 2.0,
        max_batch_bytes: int = 1 << 20,
        max_pending_bytes: int = 16 << 20,
    ) -> None:
        self._endpoint = endpoint_name
        self._settings = settings
        self._objects = objects
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - sampling, not secrets
        self._interval = flush_interval_s
        self._max_batch = max_batch_bytes
        self._max_pending = max_pending_bytes
        self._batches: dict[str, _Batch] = {}  # by hour folder
        self._pending = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        self._failing = 0  # failed writes since the last one that succeeded
        self._lost = 0  # records those writes lost
        self.captured = 0
        self.dropped = 0
        self.objects_written = 0
        self.failed_writes = 0

    def observe(self, request: InvokeInput, response: InvokeOutput) -> None:
        if self._closed:
            return
        percentage = self._settings.sampling_percentage
        if percentage < 100 and self._rng.random() * 100 >= percentage:
            return
        size = len(request.body) + len(response.body)
        if self._pending + size > self._max_pending:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "endpoint %s: data capture is %d bytes behind; %d captures dropped",
                    self._endpoint,
                    self._pending,
                    self.dropped,
                )
            return
        now = self._clock.time()
        folder = hour_prefix(
            self._settings.destination, self._endpoint, response.invoked_variant, now
        )
        batch = self._batches.get(folder)
        if batch is None:
            batch = self._batches[folder] = _Batch(first=now)
        batch.calls.append(_Captured(request, response, now, str(uuid.uuid4())))
        batch.size += size
        self._pending += size
        self.captured += 1
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"data capture {self._endpoint}"
            )
        if batch.size >= self._max_batch:
            self._wake.set()

    async def close(self) -> None:
        """Write what is buffered, then stop; later calls are not captured.

        The writing happens in one shielded task that every ``close`` awaits: cancelling a
        caller (a shutdown cancels background retirements) does not cancel the write, and a
        later ``close`` still waits for it.
        """
        if self._closing is None:
            self._closed = True
            self._wake.set()
            task = asyncio.get_running_loop().create_task(
                self._finish(), name=f"close data capture {self._endpoint}"
            )
            self._closing = task
            _final_flushes.add(task)
            task.add_done_callback(_final_flushes.discard)
        await asyncio.shield(self._closing)

    async def _finish(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()

    async def flush(self) -> None:
        """Write every buffered batch now, one object per variant and hour."""
        batches, self._batches = self._batches, {}
        for folder, batch in batches.items():
            try:
                data = await asyncio.to_thread(self._encode, batch)
                url = object_url(folder, batch.first, str(uuid.uuid4()))
                await self._objects.write(url, data, CONTENT_TYPE)
                self.objects_written += 1
            except Exception as error:
                # The outermost layer of this background task: no caller to report to.
                self._failed(folder, len(batch.calls), error)
            else:
                self._recovered()
            finally:
                self._pending -= batch.size

    def _failed(self, folder: str, records: int, error: Exception) -> None:
        """Count a failed write; log only the first of a streak, without a traceback: a
        destination that stays broken would otherwise log the same error every interval."""
        self.failed_writes += 1
        self._failing += 1
        self._lost += records
        if self._failing == 1:
            log.warning(
                "endpoint %s: %d data capture records to %s were lost: %s; "
                "further failures are counted but not logged until a write succeeds",
                self._endpoint,
                records,
                folder,
                str(error) or type(error).__name__,
            )

    def _recovered(self) -> None:
        if self._failing:
            log.warning(
                "endpoint %s: data capture writes succeed again; %d writes (%d records) were lost",
                self._endpoint,
                self._failing,
                self._lost,
            )
            self._failing = self._lost = 0

    async def _run(self) -> None:
        while not self._closed:
            try:
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    def _encode(self, batch: _Batch) -> bytes:
        return b"".join(
            encode_line(
                capture_record(
                    settings=self._settings,
                    request_body=call.request.body,
                    request_type=call.request.content_type,
                    response_body=call.response.body,
                    response_type=call.response.content_type,
                    event_id=call.event_id,
                    inference_time=call.when,
                    inference_id=call.request.inference_id,
                )
            )
            for call in batch.calls
        )
