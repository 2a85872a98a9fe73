"""Calls to a ready instance: deadlines, in-flight accounting, size limits, streaming."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from sagehost.core.errors import ContainerResponseTooLarge, ContainerTimeout
from sagehost.workers.instance import failure_reason

from .helpers import eventually, fleet, request, running_pool


def test_timeout_raises_and_releases_the_call(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            running = await pool.launch(fleet("slow", env={"SLOW_SECONDS": "5"}))
            await running.wait_ready()
            (instance,) = running.instances
            started = time.monotonic()
            with pytest.raises(ContainerTimeout) as timed_out:
                await instance.invoke(request(b"x", timeout_s=0.5))
            assert 0.48 <= time.monotonic() - started < 2  # loop clock may lag a few ms
            assert timed_out.value.message == "The container did not answer within 0.5 seconds."
            assert instance.outstanding == 0
            assert instance.ready  # slow is not broken

    asyncio.run(main())


def test_outstanding_counts_calls_in_flight_and_cancelled_ones(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            running = await pool.launch(fleet("slow", env={"SLOW_SECONDS": "0.3"}))
            await running.wait_ready()
            (instance,) = running.instances
            calls = [asyncio.create_task(instance.invoke(request(b"%d" % i))) for i in range(3)]
            await eventually(lambda: instance.outstanding == 3)
            responses = await asyncio.gather(*calls)
            assert [r.body for r in responses] == [b"0", b"1", b"2"]
            assert instance.outstanding == 0
            cancelled = asyncio.create_task(instance.invoke(request(b"never")))
            await eventually(lambda: instance.outstanding == 1)
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            assert instance.outstanding == 0

    asyncio.run(main())


@pytest.mark.parametrize("path", ["/invocations", "/chunked"])
def test_response_size_limit(tmp_path: Path, path: str) -> None:
    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            running = await pool.launch(fleet("echo"))
            await running.wait_ready()
            (instance,) = running.instances
            exact = await instance.invoke(request(b"a" * 1000, path=path, max_response_bytes=1000))
            assert exact.body == b"a" * 1000
            with pytest.raises(ContainerResponseTooLarge) as too_large:
                await instance.invoke(request(b"a" * 1001, path=path, max_response_bytes=1000))
            assert too_large.value.limit == 1000
            assert too_large.value.message == "The container's response is larger than 1000 bytes."
            assert instance.outstanding == 0
            assert instance.ready

    asyncio.run(main())


def test_stream_yields_chunks_as_sent(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            running = await pool.launch(fleet("echo"))
            await running.wait_ready()
            (instance,) = running.instances
            body = b"data: one\n\ndata: two\n\n"
            async with instance.invoke_stream(request(body, path="/chunked")) as stream:
                assert instance.outstanding == 1
                assert stream.status == 200
                assert stream.headers["transfer-encoding"] == "chunked"
                chunks = [chunk async for chunk in stream.chunks]
            assert b"".join(chunks) == body
            assert instance.outstanding == 0

    asyncio.run(main())


def test_failure_reason_keeps_the_end_of_the_log_within_1024_characters() -> None:
    tail = "".join(f"line {n}\n" for n in range(500)).strip()
    reason = failure_reason("Container primary exited with status 1.", tail)
    assert len(reason) == 1024
    assert reason.startswith("Container primary exited with status 1. Last log lines: ...")
    assert reason.endswith("line 498\nline 499")
    assert failure_reason("short", "") == "short"
    assert failure_reason("x" * 2000, "tail") == "x" * 1024
