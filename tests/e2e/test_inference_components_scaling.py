"""Copy counts of inference components: live changes under load, scaling up from zero on
demand, and components coming back after a restart."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

from botocore.exceptions import ClientError

from sagehost.testing.server import RunningServer
from tests.e2e import restartable
from tests.e2e.conftest import unique
from tests.e2e.inference_component_helpers import (
    create_component,
    error_of,
    eventually,
    hosting,
    invoke,
    pid_of,
    settled,
)


class Load:
    """Threads that invoke a component back to back, each call holding its copy for 50 ms,
    and record every outcome."""

    def __init__(self, server: RunningServer, endpoint: str, component: str, threads: int) -> None:
        self._stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(server, endpoint, component), daemon=True)
            for _ in range(threads)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, server: RunningServer, endpoint: str, component: str) -> None:
        rt = server.client("sagemaker-runtime")
        body = b"sleep:0.05"
        while not self._stop.is_set():
            try:
                reply = invoke(rt, endpoint, component, body)
                answer = reply["Body"].read()
                outcome = None if answer == body else f"wrong body {answer!r}"
            except ClientError as error:
                outcome = f"{error.response['Error']['Code']}: {error.response['Error']['Message']}"
            with self._lock:
                if outcome is None:
                    self.ok += 1
                else:
                    self.failures.append(outcome)

    def calls(self) -> int:
        with self._lock:
            return self.ok + len(self.failures)


def test_copy_count_changes_under_load_fail_no_call(
    server: RunningServer, sm: Any, rt: Any
) -> None:
    endpoint, model = hosting(sm, "icload")
    name = unique("icload")
    create_component(sm, name, endpoint, model, copies=1)
    assert settled(sm, name)["RuntimeConfig"] == {"DesiredCopyCount": 1, "CurrentCopyCount": 1}
    (only,) = {pid_of(rt, endpoint, name) for _ in range(5)}

    with Load(server, endpoint, name, threads=6) as load:
        eventually(lambda: load.calls() >= 10)
        sm.update_inference_component_runtime_config(
            InferenceComponentName=name, DesiredRuntimeConfig={"CopyCount": 3}
        )
        grown = settled(sm, name)
        assert grown["InferenceComponentStatus"] == "InService"
        assert grown["RuntimeConfig"] == {"DesiredCopyCount": 3, "CurrentCopyCount": 3}
        pids: set[int] = set()

        def met_all() -> bool:
            pids.add(pid_of(rt, endpoint, name))
            return len(pids) == 3

        # Calls go to the least busy copy, so under load it may take a few to meet all three.
        eventually(met_all)
        assert only in pids
        before_shrink = load.calls()
        sm.update_inference_component_runtime_config(
            InferenceComponentName=name, DesiredRuntimeConfig={"CopyCount": 1}
        )
        shrunk = settled(sm, name)
        assert shrunk["InferenceComponentStatus"] == "InService"
        assert shrunk["RuntimeConfig"] == {"DesiredCopyCount": 1, "CurrentCopyCount": 1}
        eventually(lambda: load.calls() >= before_shrink + 30)
    assert load.failures == []
    assert load.ok >= 50
    (left,) = {pid_of(rt, endpoint, name) for _ in range(10)}
    assert left in pids


def test_scaled_to_zero_answers_429_then_scales_up_on_demand(sm: Any, rt: Any) -> None:
    endpoint, model = hosting(sm, "iczero")
    name = unique("iczero")
    create_component(sm, name, endpoint, model, copies=1)
    assert settled(sm, name)["InferenceComponentStatus"] == "InService"
    assert invoke(rt, endpoint, name, b"warm")["Body"].read() == b"warm"

    sm.update_inference_component_runtime_config(
        InferenceComponentName=name, DesiredRuntimeConfig={"CopyCount": 0}
    )
    idle = settled(sm, name)
    assert idle["InferenceComponentStatus"] == "InService"
    assert idle["RuntimeConfig"] == {"DesiredCopyCount": 0, "CurrentCopyCount": 0}

    status, code, message = error_of(lambda: invoke(rt, endpoint, name))
    assert (status, code) == (429, "ModelNotReadyException")
    assert message == (
        f"Inference component {name} of endpoint {endpoint} has no copies; one is being "
        "started. Try again in a moment."
    )
    # While the copy starts, calls keep answering 429 rather than waiting.
    status, code, _ = error_of(lambda: invoke(rt, endpoint, name))
    assert (status, code) == (429, "ModelNotReadyException")

    answers: list[bytes] = []

    def served() -> bool:
        try:
            answers.append(invoke(rt, endpoint, name, b"awake")["Body"].read())
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ModelNotReadyException"
            return False
        return True

    eventually(served)
    assert answers == [b"awake"]
    woken = settled(sm, name)
    assert woken["InferenceComponentStatus"] == "InService"
    assert woken["RuntimeConfig"] == {"DesiredCopyCount": 1, "CurrentCopyCount": 1}


own_server = restartable.own_server


def test_components_come_back_after_a_restart(own_server: RunningServer) -> None:
    sm, rt = own_server.client("sagemaker"), own_server.client("sagemaker-runtime")
    endpoint, model = hosting(sm, "icback")
    busy, idle = unique("icbusy"), unique("icidle")
    create_component(sm, busy, endpoint, model, copies=2)
    create_component(sm, idle, endpoint, model, copies=0)
    assert settled(sm, busy)["RuntimeConfig"]["CurrentCopyCount"] == 2
    before = {pid_of(rt, endpoint, busy) for _ in range(20)}
    assert len(before) == 2

    assert own_server.stop(signal.SIGTERM) == 0
    own_server.start()
    sm, rt = own_server.client("sagemaker"), own_server.client("sagemaker-runtime")
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"
    back = settled(sm, busy)
    assert back["InferenceComponentStatus"] == "InService"
    assert back["RuntimeConfig"] == {"DesiredCopyCount": 2, "CurrentCopyCount": 2}
    reply = invoke(rt, endpoint, busy, b"again", Accept="application/x-inspect")
    assert json.loads(reply["Body"].read())["body"] == "again"
    after = {pid_of(rt, endpoint, busy) for _ in range(20)}
    assert len(after) == 2 and not after & before
    assert settled(sm, idle)["RuntimeConfig"] == {"DesiredCopyCount": 0, "CurrentCopyCount": 0}
    status, code, _ = error_of(lambda: invoke(rt, endpoint, idle))
    assert (status, code) == (429, "ModelNotReadyException")
    listed = sm.list_inference_components(EndpointNameEquals=endpoint, SortBy="Name")
    assert sorted(c["InferenceComponentName"] for c in listed["InferenceComponents"]) == sorted(
        [busy, idle]
    )
