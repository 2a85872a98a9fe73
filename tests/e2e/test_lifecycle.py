"""Crashes, restarts, shutdown and live updates: nothing is lost and nothing is left behind."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sagehost.testing.server import RunningServer
from tests.e2e import restartable
from tests.e2e.conftest import create_model_and_config, deploy, unique


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes once its state is Z.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids: set[int], timeout: float = 20.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = {pid for pid in pids if pid_alive(pid)}
        if not alive:
            return alive
        time.sleep(0.05)
    return {pid for pid in pids if pid_alive(pid)}


def worker_pid(rt: Any, name: str) -> int:
    reply = rt.invoke_endpoint(EndpointName=name, Body=b"x", Accept="application/x-inspect")
    pid: int = json.loads(reply["Body"].read())["pid"]
    return pid


own_server = restartable.own_server


def test_crashed_worker_is_restarted(sm: Any, rt: Any) -> None:
    name = unique("crash")
    deploy(sm, name)
    before = worker_pid(rt, name)
    with pytest.raises(rt.exceptions.ModelError) as error:
        rt.invoke_endpoint(EndpointName=name, Body=b"crash", ContentType="text/plain")
    assert error.value.response["OriginalStatusCode"] == 0
    # The next call waits for the restarted instance instead of failing.
    after = worker_pid(rt, name)
    assert after != before
    assert rt.invoke_endpoint(EndpointName=name, Body=b"again")["Body"].read() == b"again"


def test_worker_killed_from_outside_recovers(sm: Any, rt: Any) -> None:
    name = unique("killed")
    deploy(sm, name)
    before = worker_pid(rt, name)
    os.kill(before, signal.SIGKILL)
    assert wait_gone({before}) == set()
    # A call racing the death may fail as a ModelError (never a 5xx); the endpoint then serves
    # from the restarted instance without anyone redeploying it.
    deadline = time.monotonic() + 15
    while True:
        try:
            after = worker_pid(rt, name)
            break
        except rt.exceptions.ModelError as error:
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 424
            assert time.monotonic() < deadline, "the killed instance never came back"
    assert after != before


def test_restart_on_same_data_dir_brings_endpoints_back(own_server: RunningServer) -> None:
    sm, rt = own_server.client("sagemaker"), own_server.client("sagemaker-runtime")
    names = [unique("durable"), unique("durable")]
    for name in names:
        deploy(sm, name)
    pids = {worker_pid(rt, name) for name in names}
    assert own_server.stop(signal.SIGTERM) == 0
    assert wait_gone(pids) == set(), "workers outlived the server"
    own_server.start()
    sm, rt = own_server.client("sagemaker"), own_server.client("sagemaker-runtime")
    for name in names:
        assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
        assert rt.invoke_endpoint(EndpointName=name, Body=b"back")["Body"].read() == b"back"


def test_sigkill_of_server_leaves_no_orphans_and_restarts(own_server: RunningServer) -> None:
    sm, rt = own_server.client("sagemaker"), own_server.client("sagemaker-runtime")
    name = unique("orphan")
    deploy(
        sm,
        name,
        variants=[{"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 2}],
    )
    pids = {worker_pid(rt, name) for _ in range(10)}
    own_server.stop(signal.SIGKILL)
    assert wait_gone(pids) == set(), "workers outlived a SIGKILLed server"
    own_server.start()
    rt = own_server.client("sagemaker-runtime")
    assert rt.invoke_endpoint(EndpointName=name, Body=b"ok")["Body"].read() == b"ok"


def test_sigterm_lets_in_flight_requests_finish(own_server: RunningServer, tmp_path: Path) -> None:
    sm, rt = own_server.client("sagemaker"), own_server.client("sagemaker-runtime")
    name = unique("drain")
    deploy(sm, name)
    pid = worker_pid(rt, name)
    result: dict[str, Any] = {}
    marker = tmp_path / "started"
    body = f"sleep:1.5@{marker}".encode()

    def slow_call() -> None:
        try:
            reply = rt.invoke_endpoint(EndpointName=name, Body=body, ContentType="text/plain")
            result["body"] = reply["Body"].read()
        except Exception as error:  # reported below
            result["error"] = error

    thread = threading.Thread(target=slow_call)
    thread.start()
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert marker.exists(), "the call never reached the model"
    assert own_server.stop(signal.SIGTERM) == 0
    thread.join(10)
    assert result == {"body": body}
    assert wait_gone({pid}) == set()


def test_update_under_load_fails_no_invocation(sm: Any, rt: Any) -> None:
    name = unique("swap")
    deploy(sm, name)
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-next",
        ProductionVariants=[{"VariantName": "Next", "ModelName": name, "InitialInstanceCount": 1}],
    )
    failures: list[BaseException] = []
    variants: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                variants.append(
                    rt.invoke_endpoint(EndpointName=name, Body=b"x")["InvokedProductionVariant"]
                )
            except Exception as error:
                failures.append(error)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    sm.update_endpoint(EndpointName=name, EndpointConfigName=f"{name}-next")
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name)
    deadline = time.monotonic() + 10
    while variants[-1:] != ["Next"] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # keep the load on while the old fleet drains
    stop.set()
    for thread in threads:
        thread.join()
    assert failures == []
    assert variants[0] == "AllTraffic"
    assert variants[-1] == "Next"


def test_an_update_interrupted_by_a_restart_is_reported(own_server: RunningServer) -> None:
    sm = own_server.client("sagemaker")
    name = unique("interrupted")
    deploy(sm, name)
    slow = f"{name}-slow"
    create_model_and_config(sm, slow, environment={"LOAD_DELAY": "60"})
    sm.update_endpoint(EndpointName=name, EndpointConfigName=slow)
    assert sm.list_endpoints(NameContains=name)["Endpoints"][0]["EndpointStatus"] == "Updating"
    assert own_server.stop(signal.SIGTERM) == 0
    own_server.start()
    sm = own_server.client("sagemaker")
    described = sm.describe_endpoint(EndpointName=name)
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == name
    assert described["FailureReason"] == (
        f"The update to endpoint configuration {slow} was interrupted when sagehost stopped; "
        "the endpoint serves its previous configuration. Update it again."
    )
    reply = own_server.client("sagemaker-runtime").invoke_endpoint(EndpointName=name, Body=b"x")
    assert reply["Body"].read() == b"x"
