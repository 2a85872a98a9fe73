"""The data-capture writer in process, against a fake object store: batching by variant and
hour, flushing on size, time and close, and the memory bound."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from sagehost.core.errors import DependencyFailed
from sagehost.core.invocation import InvokeInput, InvokeOutput
from sagehost.core.ports import ObjectInfo
from sagehost.invoke.capture import CaptureWriter
from sagehost.invoke.capture_format import CaptureSettings, parse_lines
from sagehost.testing.fakes import FakeClock

SETTINGS = CaptureSettings(
    destination="s3://bucket/dc",
    sampling_percentage=100.0,
    capture_input=True,
    capture_output=True,
    csv_types=frozenset({"text/csv"}),
)
START = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


class MemoryStore:
    def __init__(self, fail: bool = False) -> None:
        self.objects: dict[str, bytes] = {}
        self.types: dict[str, str | None] = {}
        self.fail = fail

    async def write(
        self, url: str, data: AsyncIterator[bytes] | bytes, content_type: str | None
    ) -> None:
        assert isinstance(data, bytes)
        if self.fail:
            raise DependencyFailed(f"cannot write {url}")
        self.objects[url] = data
        self.types[url] = content_type

    async def stat(self, url: str) -> ObjectInfo:
        raise AssertionError("the capture writer never reads")

    def read(self, url: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        raise AssertionError("the capture writer never reads")


def call(body: bytes, variant: str = "AllTraffic") -> tuple[InvokeInput, InvokeOutput]:
    return (
        InvokeInput(endpoint_name="ep", body=body, content_type="text/csv"),
        InvokeOutput(body=b"out:" + body, invoked_variant=variant, content_type="text/csv"),
    )


def writer(
    store: MemoryStore,
    clock: FakeClock,
    *,
    flush_interval_s: float = 2.0,
    max_batch_bytes: int = 1 << 20,
    max_pending_bytes: int = 16 << 20,
) -> CaptureWriter:
    return CaptureWriter(
        "ep",
        SETTINGS,
        store,
        clock,
        rng=random.Random(7),
        flush_interval_s=flush_interval_s,
        max_batch_bytes=max_batch_bytes,
        max_pending_bytes=max_pending_bytes,
    )


@in_loop
async def test_close_writes_one_object_per_variant_and_hour() -> None:
    store, clock = MemoryStore(), FakeClock(START)
    capture = writer(store, clock, flush_interval_s=3600)
    capture.observe(*call(b"1,2"))
    capture.observe(*call(b"3,4", variant="Other"))
    clock.advance(3600)  # the next hour goes to a folder of its own
    capture.observe(*call(b"5,6"))
    assert store.objects == {}  # nothing is written on the call path
    await capture.close()
    folders = sorted(url.rsplit("/", 1)[0] for url in store.objects)
    assert folders == [
        "s3://bucket/dc/ep/AllTraffic/2027/01/15/08",
        "s3://bucket/dc/ep/AllTraffic/2027/01/15/09",
        "s3://bucket/dc/ep/Other/2027/01/15/08",
    ]
    datas = sorted(
        r["captureData"]["endpointInput"]["data"]
        for data in store.objects.values()
        for r in parse_lines(data)
    )
    assert datas == ["1,2", "3,4", "5,6"]
    assert set(store.types.values()) == {"application/jsonl"}
    assert (capture.captured, capture.objects_written, capture.dropped) == (3, 3, 0)
    # Closed: later calls are not captured.
    capture.observe(*call(b"7,8"))
    await capture.close()
    assert capture.captured == 3


@in_loop
async def test_a_full_batch_is_written_without_waiting_for_the_interval() -> None:
    store, clock = MemoryStore(), FakeClock(START)
    capture = writer(store, clock, flush_interval_s=3600, max_batch_bytes=100)
    for index in range(10):
        capture.observe(*call(f"{index:02d},xxxxxxxxxx".encode()))
    for _ in range(100):
        if store.objects:
            break
        await asyncio.sleep(0.01)
    assert len(store.objects) == 1
    assert len(parse_lines(next(iter(store.objects.values())))) == 10
    await capture.close()


@in_loop
async def test_the_interval_flushes_a_small_batch() -> None:
    store, clock = MemoryStore(), FakeClock(START)
    capture = writer(store, clock, flush_interval_s=0.05)
    capture.observe(*call(b"1"))
    for _ in range(200):
        if store.objects:
            break
        await asyncio.sleep(0.01)
    assert len(store.objects) == 1
    await capture.close()
    assert len(store.objects) == 1  # nothing left to write


@in_loop
async def test_unwritten_captures_are_bounded() -> None:
    store, clock = MemoryStore(), FakeClock(START)
    capture = writer(store, clock, flush_interval_s=3600, max_pending_bytes=50)
    for _ in range(10):
        capture.observe(*call(b"0123456789"))  # 10 + 14 bytes a call
    assert (capture.captured, capture.dropped) == (2, 8)
    await capture.close()
    assert sum(len(parse_lines(d)) for d in store.objects.values()) == 2


@in_loop
async def test_a_failed_write_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    store, clock = MemoryStore(fail=True), FakeClock(START)
    capture = writer(store, clock, flush_interval_s=3600)
    capture.observe(*call(b"1"))
    await capture.close()
    assert (capture.failed_writes, capture.objects_written) == (1, 0)
    assert "endpoint ep: 1 data capture records to s3://bucket/dc/ep/AllTraffic" in caplog.text


@in_loop
async def test_sampling_percentage() -> None:
    store, clock = MemoryStore(), FakeClock(START)
    half = CaptureSettings(
        destination="s3://bucket/dc",
        sampling_percentage=25.0,
        capture_input=True,
        capture_output=False,
    )
    capture = CaptureWriter("ep", half, store, clock, rng=random.Random(3))
    for index in range(400):
        capture.observe(*call(str(index).encode()))
    assert 60 <= capture.captured <= 140, capture.captured
    await capture.close()


class GatedStore(MemoryStore):
    """A store whose writes wait until ``gate`` opens, like a slow S3."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def write(
        self, url: str, data: AsyncIterator[bytes] | bytes, content_type: str | None
    ) -> None:
        self.entered.set()
        await self.gate.wait()
        await super().write(url, data, content_type)


@in_loop
async def test_a_cancelled_close_still_writes_and_a_later_close_waits_for_it() -> None:
    store, clock = GatedStore(), FakeClock(START)
    capture = writer(store, clock, flush_interval_s=3600)
    for index in range(5):
        capture.observe(*call(str(index).encode()))
    closing = asyncio.ensure_future(capture.close())
    await store.entered.wait()
    closing.cancel()  # as a shutdown cancels an endpoint's background retirement
    await asyncio.gather(closing, return_exceptions=True)
    assert closing.cancelled()
    store.gate.set()
    await capture.close()
    assert len(store.objects) == 1
    datas = [
        r["captureData"]["endpointInput"]["data"] for r in parse_lines(*store.objects.values())
    ]
    assert datas == ["0", "1", "2", "3", "4"]
    assert (capture.objects_written, capture.failed_writes) == (1, 0)


@in_loop
async def test_a_failure_streak_logs_one_warning_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock = MemoryStore(fail=True), FakeClock(START)
    capture = writer(store, clock, flush_interval_s=3600)

    def logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "sagehost.capture"]

    for index in range(3):
        capture.observe(*call(str(index).encode()))
        await capture.flush()
    assert capture.failed_writes == 3
    assert [(r.levelname, r.exc_info) for r in logged()] == [("WARNING", None)]
    folder = "s3://bucket/dc/ep/AllTraffic/2027/01/15/08"
    assert re.fullmatch(
        f"endpoint ep: 1 data capture records to {folder} were lost: "
        f"cannot write {folder}/00-00-000-[0-9a-f-]{{36}}\\.jsonl; "
        "further failures are counted but not logged until a write succeeds",
        logged()[0].getMessage(),
    )
    store.fail = False
    capture.observe(*call(b"ok"))
    await capture.flush()
    assert [r.getMessage() for r in logged()[1:]] == [
        "endpoint ep: data capture writes succeed again; 3 writes (3 records) were lost"
    ]
    store.fail = True  # a new streak is logged again
    capture.observe(*call(b"x"))
    await capture.close()
    assert len(logged()) == 3
    assert logged()[2].getMessage().startswith(f"endpoint ep: 1 data capture records to {folder}")
    assert (capture.failed_writes, capture.objects_written) == (4, 1)
