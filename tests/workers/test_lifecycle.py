"""Launching fleets of real processes: readiness, start-up failures, environment, shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sagehost.core.errors import DeploymentFailed
from sagehost.workers.process import free_port

from .helpers import APP, eventually, fleet, pid_alive, request, running_pool


def test_echo_round_trip_keeps_exact_bytes_and_headers(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            running = await pool.launch(fleet("echo"))
            await running.wait_ready()
            (instance,) = running.instances
            assert instance.ready and instance.base_url is not None
            host = instance.base_url.removeprefix("http://")
            body = bytes(range(256)) * 3 + b"\r\n\x00end"
            headers = [
                ("Content-Type", "application/x-npy"),
                ("Accept", "application/json"),
                ("X-Amzn-SageMaker-Custom-Attributes", "trace=1; c=2"),
            ]
            response = await instance.invoke(request(body, headers))
            assert response.status == 200
            assert response.body == body
            assert response.headers["content-type"] == "application/x-npy"
            assert response.headers["content-length"] == str(len(body))
            assert response.headers["x-pid"] == str(instance.pid)
            received = json.loads(response.headers["x-received"])
            assert received == [
                ["Host", host],
                ["Content-Type", "application/x-npy"],
                ["Accept", "application/json"],
                ["X-Amzn-SageMaker-Custom-Attributes", "trace=1; c=2"],
                ["Content-Length", str(len(body))],
            ]
            # Nothing is added on our side: no Content-Type, Accept, User-Agent, Accept-Encoding.
            bare = await instance.invoke(request(b""))
            assert json.loads(bare.headers["x-received"]) == [
                ["Host", host],
                ["Content-Length", "0"],
            ]
            assert instance.outstanding == 0

    asyncio.run(main())


def test_three_instances_are_distinct_processes(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            running = await pool.launch(fleet("echo", key="trio", count=3))
            await running.wait_ready()
            instances = running.instances
            assert [i.instance_id for i in instances] == ["trio-0", "trio-1", "trio-2"]
            assert all(i.ready for i in instances)
            assert len({i.pid for i in instances}) == 3
            assert len({i.base_url for i in instances}) == 3
            for instance in instances:
                response = await instance.invoke(request(b"x"))
                assert response.headers["x-pid"] == str(instance.pid)
            logs = sorted(p.name for p in (tmp_path / "logs" / "trio").iterdir())
            assert logs == ["trio-0.log", "trio-1.log", "trio-2.log"]

    asyncio.run(main())


def test_worker_environment(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    base_env = {
        "PATH": os.environ["PATH"],
        "KEEP_ME": "1",
        "AWS_ACCESS_KEY_ID": "AKIDLEAK",
        "AWS_SECRET_ACCESS_KEY": "leak",
        "AWS_SESSION_TOKEN": "leak",
        "AWS_REGION": "eu-west-1",
        "SAGEHOST_INTERNAL_SECRET": "leak",
    }

    async def main() -> None:
        async with running_pool(tmp_path / "data", base_env=base_env) as pool:
            spec = fleet("echo", env={"MODEL_FLAG": "on"}, model_data_url=str(model))
            running = await pool.launch(spec)
            await running.wait_ready()
            (instance,) = running.instances
            env = json.loads((await instance.invoke(request(path="/env"))).body)
            assert instance.base_url is not None
            port = instance.base_url.rsplit(":", 1)[1]
            assert env["SAGEMAKER_BIND_TO_PORT"] == port
            assert env["SAGEHOST_BIND_HOST"] == "127.0.0.1"
            assert env["SAGEHOST_MODEL_DIR"] == str(model)
            base = Path(env["SAGEMAKER_BASE_DIR"])
            assert base == tmp_path / "data" / "fleets" / "fleet"
            assert (base / "model").resolve() == model
            assert env["MODEL_FLAG"] == "on"
            assert env["KEEP_ME"] == "1"
            assert env["AWS_REGION"] == "eu-west-1"
            leaked = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
            assert leaked.isdisjoint(env)
            assert "SAGEHOST_INTERNAL_SECRET" not in env

    asyncio.run(main())


def test_exit_at_start_fails_fast_with_status_and_log(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            running = await pool.launch(fleet("exit-at-start", startup_timeout_s=60))
            started = time.monotonic()
            with pytest.raises(DeploymentFailed) as failed:
                await running.wait_ready()
            assert time.monotonic() - started < 5
            assert failed.value.message == (
                "Container primary exited with status 3 before it passed the health check. "
                "Last log lines: model failed to load: no weights found"
            )
            assert not running.instances[0].ready

    asyncio.run(main())


def test_a_port_lost_at_start_is_retried_on_another(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path / "data") as pool:
            spec = fleet("echo", env={"PORT_TAKEN_ONCE": str(tmp_path / "taken")})
            running = await pool.launch(spec)
            await running.wait_ready()
            (instance,) = running.instances
            assert (tmp_path / "taken").exists()
            log = instance.log_path.read_text()
            assert log.startswith("OSError: [Errno 98] Address already in use\n")
            assert log.count("echo serving on") == 1
            assert instance.restarts == 0

    asyncio.run(main())


def test_never_ready_fails_after_the_startup_budget(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            running = await pool.launch(fleet("never-ready", startup_timeout_s=1.5))
            started = time.monotonic()
            with pytest.raises(DeploymentFailed) as failed:
                await running.wait_ready()
            assert 1.48 <= time.monotonic() - started < 6  # loop clock may lag a few ms
            reason = failed.value.message
            assert reason.startswith(
                "Container primary did not pass the /ping health check within 1.5 seconds. "
                "Last log lines: never-ready serving on ('127.0.0.1', "
            )
            pid = running.instances[0].pid
            assert pid is not None
            await eventually(lambda: not pid_alive(pid))

    asyncio.run(main())


def test_command_that_cannot_start(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            running = await pool.launch(fleet("", image="process:/nonexistent/serve --fast"))
            with pytest.raises(DeploymentFailed) as failed:
                await running.wait_ready()
            assert failed.value.message.startswith("Container primary could not start: ")
            assert "/nonexistent/serve" in failed.value.message

    asyncio.run(main())


def test_url_image_uses_a_server_already_running(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")
    env = {**os.environ, "SAGEMAKER_BIND_TO_PORT": str(port)}
    server = subprocess.Popen([sys.executable, str(APP), "echo"], env=env)

    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            spec = fleet("", count=2, image=f"url:http://127.0.0.1:{port}/")
            running = await pool.launch(spec)
            await running.wait_ready()
            assert [i.base_url for i in running.instances] == [f"http://127.0.0.1:{port}"] * 2
            assert [i.pid for i in running.instances] == [None, None]
            for instance in running.instances:
                response = await instance.invoke(request(b"hello"))
                assert (response.status, response.body) == (200, b"hello")
                assert response.headers["x-pid"] == str(server.pid)

    try:
        asyncio.run(main())
        assert server.poll() is None  # not ours to stop
    finally:
        server.kill()
        server.wait()


def test_url_image_that_never_answers(tmp_path: Path) -> None:
    port = free_port("127.0.0.1")

    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            spec = fleet("", image=f"url:http://127.0.0.1:{port}", startup_timeout_s=0.5)
            with pytest.raises(DeploymentFailed) as failed:
                await (await pool.launch(spec)).wait_ready()
            assert failed.value.message == (
                f"Container at http://127.0.0.1:{port} did not pass the /ping health check "
                "within 0.5 seconds."
            )

    asyncio.run(main())


def test_docker_image_without_an_engine(tmp_path: Path) -> None:
    socket_path = tmp_path / "docker.sock"

    async def main() -> None:
        async with running_pool(tmp_path, docker_socket=socket_path) as pool:
            running = await pool.launch(fleet("", image="acme/model:1.0"))
            started = time.monotonic()
            with pytest.raises(DeploymentFailed) as failed:
                await running.wait_ready()
            assert time.monotonic() - started < 2
            assert failed.value.message == (
                'Image "acme/model:1.0" needs a Docker engine and none is reachable '
                f"(DOCKER_HOST is unset and {socket_path} does not answer). "
                'Use image "sagehost/python" or "process:<command>" to run without Docker.'
            )
            assert running.instances[0].pid is None

    asyncio.run(main())


def test_missing_model_data_fails_the_fleet(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tar.gz"

    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            spec = fleet("echo", count=2, model_data_url=f"file://{missing}")
            with pytest.raises(DeploymentFailed) as failed:
                await (await pool.launch(spec)).wait_ready()
            assert failed.value.message == (
                f"Could not find model data at file://{missing}: no such file or directory."
            )

    asyncio.run(main())


def test_shutdown_leaves_no_process(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"

    async def main() -> list[int]:
        async with running_pool(tmp_path / "data") as pool:
            first = await pool.launch(fleet("echo", key="a", count=2))
            second = await pool.launch(fleet("echo", key="b", env={"CHILD_PIDFILE": str(pidfile)}))
            await asyncio.gather(first.wait_ready(), second.wait_ready())
            pids = [i.pid for f in (first, second) for i in f.instances]
            pids.append(int(pidfile.read_text()))
            assert all(pid is not None and pid_alive(pid) for pid in pids)
            assert pool.fleets == {first, second}
        assert pool.fleets == frozenset()
        return [pid for pid in pids if pid is not None]

    pids = asyncio.run(main())
    # The worker's own child shares its process group and goes with it.
    assert [pid for pid in pids if pid_alive(pid)] == []


def test_stop_lets_in_flight_calls_finish(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_pool(tmp_path) as pool:
            running = await pool.launch(fleet("slow", env={"SLOW_SECONDS": "0.5"}))
            await running.wait_ready()
            (instance,) = running.instances
            call = asyncio.create_task(instance.invoke(request(b"last")))
            await eventually(lambda: instance.outstanding == 1)
            await running.stop()
            assert not instance.ready
            response = call.result()
            assert (response.status, response.body) == (200, b"last")
            assert instance.pid is not None and not pid_alive(instance.pid)

    asyncio.run(main())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_sigkill_of_sagehost_leaves_no_orphan(tmp_path: Path, loop: str) -> None:
    parent = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("parent_app.py")), str(tmp_path), loop],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        worker = int(line)
        assert pid_alive(worker)
        parent.kill()
        parent.wait()

        async def gone() -> None:
            await eventually(lambda: not pid_alive(worker), timeout_s=5)

        asyncio.run(gone())
    finally:
        parent.kill()
        parent.wait()
