"""After readiness: crashes, kills and failing pings take an instance out and bring it back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from sagehost.core.errors import ContainerUnreachable
from sagehost.workers.instance import InstanceState
from sagehost.workers.settings import Backoff, RestartPolicy

from .helpers import eventually, fleet, pid_alive, request, running_pool


def test_crash_mid_request_is_unreachable_then_restarted(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            running = await pool.launch(fleet("echo"))
            await running.wait_ready()
            (instance,) = running.instances
            first_pid = instance.pid
            with pytest.raises(ContainerUnreachable):
                await instance.invoke(request(b"boom", path="/crash"))
            assert not instance.ready
            assert instance.outstanding == 0
            await eventually(lambda: instance.ready)
            assert instance.pid != first_pid
            assert first_pid is not None and not pid_alive(first_pid)
            assert instance.restarts == 1
            response = await instance.invoke(request(b"again"))
            assert (response.status, response.body) == (200, b"again")
            assert response.headers["x-pid"] == str(instance.pid)

    asyncio.run(main())


def test_killed_worker_leaves_routing_at_once_and_comes_back(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            running = await pool.launch(fleet("echo"))
            await running.wait_ready()
            (instance,) = running.instances
            killed = instance.pid
            assert killed is not None
            os.kill(killed, signal.SIGKILL)
            await eventually(lambda: not instance.ready, timeout_s=2)
            await eventually(lambda: instance.ready and instance.pid != killed)
            response = await instance.invoke(request(b"back"))
            assert response.body == b"back"
            log = instance.log_path.read_text()
            assert log.count("echo serving on") == 2  # appended across the restart

    asyncio.run(main())


def test_unhealthy_instance_is_taken_out_then_restarted(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path, health_interval_s=0.05, unhealthy_restart_s=0.3) as pool:
            running = await pool.launch(fleet("echo"))
            await running.wait_ready()
            (instance,) = running.instances
            sick = instance.pid
            await instance.invoke(request(path="/sick"))
            await eventually(lambda: instance.state is InstanceState.UNHEALTHY, timeout_s=3)
            assert not instance.ready
            assert sick is not None and pid_alive(sick)  # alive, yet out of routing
            await eventually(lambda: instance.ready and instance.pid != sick, timeout_s=5)
            assert not pid_alive(sick)

    asyncio.run(main())


def test_crash_loop_backs_off_and_never_fails_a_deployed_fleet(tmp_path: Path) -> None:
    marker = tmp_path / "started-once"

    async def main() -> None:
        restart = RestartPolicy(initial_s=0.1, max_s=10.0)
        async with running_pool(tmp_path / "data", restart=restart) as pool:
            running = await pool.launch(fleet("echo", env={"ONCE_MARKER": str(marker)}))
            await running.wait_ready()
            (instance,) = running.instances
            with pytest.raises(ContainerUnreachable):
                await instance.invoke(request(path="/crash"))
            crashed = time.monotonic()

            def failures() -> int:
                return instance.log_path.read_text().count("restarted, giving up")

            await eventually(lambda: failures() >= 3)
            # Restarts wait 0.1, then 0.2, then 0.4 s: a crash loop is slowed, not spun.
            assert time.monotonic() - crashed >= 0.1 + 0.2 + 0.4
            assert not instance.ready
            assert instance.state is not InstanceState.FAILED
            await running.wait_ready()  # a deployed fleet stays deployed

    asyncio.run(main())


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(RestartPolicy())
    assert [backoff.next_delay() for _ in range(9)] == [
        0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0
    ]  # fmt: skip
    backoff.reset()
    assert backoff.next_delay() == 0.1
