"""Growing and shrinking a running fleet in place (``Fleet.scale``) with real worker processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sagehost.core.errors import DeploymentFailed
from sagehost.workers.instance import InstanceState

from .helpers import eventually, fleet, pid_alive, request, running_pool


def test_grow_adds_new_instances_and_keeps_the_old_ones(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            running = await pool.launch(fleet("echo", key="grow"))
            await running.wait_ready()
            (first,) = running.instances
            await running.scale(3)
            assert [i.instance_id for i in running.instances] == ["grow-0", "grow-1", "grow-2"]
            assert running.instances[0] is first and first.ready
            await running.wait_ready()
            assert all(i.ready for i in running.instances)
            assert len({i.pid for i in running.instances}) == 3
            for instance in running.instances:
                reply = await instance.invoke(request(b"x"))
                assert reply.headers["x-pid"] == str(instance.pid)
            logs = sorted(p.name for p in (tmp_path / "logs" / "grow").iterdir())
            assert logs == ["grow-0.log", "grow-1.log", "grow-2.log"]

    asyncio.run(main())


def test_shrink_drains_calls_in_flight_before_stopping(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path, stop_grace_s=10.0) as pool:
            running = await pool.launch(
                fleet("slow", key="shrink", count=2, env={"SLOW_SECONDS": "1"})
            )
            await running.wait_ready()
            busy, idle = running.instances
            pids = {busy.pid, idle.pid}
            call = asyncio.create_task(busy.invoke(request(b"in flight")))
            await eventually(lambda: busy.outstanding == 1)
            scaled = asyncio.create_task(running.scale(0))
            # Both leave the routing table at once, before either has stopped.
            await eventually(lambda: not running.instances)
            assert not busy.ready and not scaled.done()
            reply = await call
            assert reply.status == 200 and reply.body == b"in flight"
            await scaled
            assert busy.state is InstanceState.STOPPED and idle.state is InstanceState.STOPPED
            assert not any(pid_alive(pid) for pid in pids if pid is not None)

    asyncio.run(main())


def test_shrink_removes_the_idle_instance_and_keeps_the_busy_one(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            running = await pool.launch(
                fleet("slow", key="pick", count=2, env={"SLOW_SECONDS": "0.5"})
            )
            await running.wait_ready()
            busy, idle = running.instances
            call = asyncio.create_task(busy.invoke(request(b"a")))
            await eventually(lambda: busy.outstanding == 1)
            await running.scale(1)
            assert list(running.instances) == [busy]
            assert idle.state is InstanceState.STOPPED
            assert (await call).body == b"a"
            assert busy.ready

    asyncio.run(main())


def test_shrink_takes_an_instance_that_is_not_ready_first(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(
            tmp_path, health_interval_s=0.05, unhealthy_after_failures=1
        ) as pool:
            running = await pool.launch(fleet("echo", key="sick", count=3))
            await running.wait_ready()
            sick = running.instances[0]
            await sick.invoke(request(b"", path="/sick"))
            await eventually(lambda: not sick.ready)
            await running.scale(2)
            assert sick not in running.instances
            assert [i.instance_id for i in running.instances] == ["sick-1", "sick-2"]
            # Growing again names the new instance after every earlier one.
            await running.scale(3)
            assert running.instances[-1].instance_id == "sick-3"
            await running.wait_ready()

    asyncio.run(main())


def test_scale_from_zero_and_a_failed_new_instance(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            running = await pool.launch(fleet("echo", key="zero", count=0))
            await running.wait_ready()
            assert list(running.instances) == []
            await running.scale(1)
            await running.wait_ready()
            assert running.instances[0].ready

            broken = await pool.launch(fleet("exit-at-start", key="broken", count=0))
            await broken.scale(1)
            try:
                await broken.wait_ready()
            except DeploymentFailed as failure:
                assert "model failed to load: no weights found" in failure.message
            else:
                raise AssertionError("a copy that exits at start must fail wait_ready")
            await broken.scale(0)
            assert list(broken.instances) == []

    asyncio.run(main())


def test_stopped_fleet_ignores_scale_and_stop_waits_for_leaving_instances(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path, stop_grace_s=10.0) as pool:
            running = await pool.launch(
                fleet("slow", key="late", count=1, env={"SLOW_SECONDS": "0.5"})
            )
            await running.wait_ready()
            (instance,) = running.instances
            call = asyncio.create_task(instance.invoke(request(b"z")))
            await eventually(lambda: instance.outstanding == 1)
            shrinking = asyncio.create_task(running.scale(0))
            await eventually(lambda: not running.instances)
            shrinking.cancel()
            # stop() still waits for the instance the cancelled shrink took out.
            await running.stop()
            assert instance.state is InstanceState.STOPPED
            assert (await call).body == b"z"
            await running.scale(2)
            assert list(running.instances) == []
            assert running not in pool.fleets

    asyncio.run(main())
