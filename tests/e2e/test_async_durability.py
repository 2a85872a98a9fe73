"""Async jobs survive a SIGKILLed server and a killed worker, and a thousand queued jobs run
once each without exceeding MaxConcurrentInvocationsPerInstance."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sagehost.testing.server import RunningServer
from tests.e2e import restartable
from tests.e2e.async_helpers import (
    deploy_async,
    describe_job,
    list_jobs,
    wait_backlog_done,
    wait_finished,
)
from tests.e2e.conftest import unique
from tests.e2e.test_lifecycle import wait_gone

# A model that counts the calls it is running at once (across threads and processes: each call
# opens the lock file anew, and flock locks belong to the open file), the highest count seen,
# and every body it was given.
COUNTING_MODEL = """
import fcntl
import os
import time

STATE = os.environ["COUNTING_STATE"]


def _change(delta, body=None):
    with open(STATE + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(STATE) as f:
                now, peak = map(int, f.read().split())
        except FileNotFoundError:
            now, peak = 0, 0
        now += delta
        with open(STATE, "w") as f:
            f.write(f"{now} {max(now, peak)}")
        if body is not None:
            with open(STATE + ".calls", "ab") as f:
                f.write(body + b"\\n")


def model_fn(model_dir):
    return None


def transform_fn(model, data, content_type, accept, context):
    raw = data.encode() if isinstance(data, str) else data
    _change(+1, raw)
    try:
        time.sleep(float(os.environ["COUNTING_SLEEP"]))
    finally:
        _change(-1)
    return raw, "text/plain"
"""


own_server = restartable.own_server


def test_sigkill_with_jobs_queued_and_running_loses_and_repeats_nothing(
    own_server: RunningServer, tmp_path: Path
) -> None:
    name = unique("durable-async")
    out, started, inputs = tmp_path / "out", tmp_path / "started", tmp_path / "in"
    for directory in (out, started, inputs):
        directory.mkdir()
    deploy_async(own_server, name, out.as_uri(), concurrency=2)
    ids = [f"job-{i:02d}" for i in range(20)]
    # Each body is unique (it names its own marker), and the model echoes it.
    bodies = {job_id: f"sleep:0.3@{started / job_id}".encode() for job_id in ids}
    rt = own_server.client("sagemaker-runtime")
    for job_id in ids:
        (inputs / job_id).write_bytes(bodies[job_id])
        reply = rt.invoke_endpoint_async(
            EndpointName=name,
            InputLocation=(inputs / job_id).as_uri(),
            ContentType="text/plain",
            InferenceId=job_id,
        )
        assert reply["OutputLocation"] == (out / f"{job_id}.out").as_uri()

    def done() -> set[str]:
        return {p.name.removesuffix(".out") for p in out.glob("*.out")}

    def running() -> set[str]:
        return {p.name for p in started.iterdir()} - done()

    deadline = time.monotonic() + 30
    while not (len(done()) >= 4 and running()):
        assert time.monotonic() < deadline, f"no progress: {sorted(done())}"
        time.sleep(0.01)
    own_server.stop(signal.SIGKILL)
    # Only now is the picture fixed: nothing writes outputs without the server.
    in_flight = running()
    finished_before = done()
    assert 1 <= len(in_flight) <= 2, in_flight
    assert len(finished_before) < len(ids) - len(in_flight), "nothing was left queued"
    # As if the killed attempts had stored their results just before the server died: their
    # jobs still run again, and the second write must replace the first, not add to it.
    for job_id in in_flight:
        (out / f"{job_id}.out").write_bytes(bodies[job_id])

    own_server.start()
    wait_backlog_done(own_server, name, len(ids), timeout=40)

    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        f"{job_id}.out" for job_id in ids
    ]
    for job_id in ids:
        assert (out / f"{job_id}.out").read_bytes() == bodies[job_id], job_id
    assert list_jobs(own_server, name, "Queued") == []
    assert list_jobs(own_server, name, "Running") == []
    assert list_jobs(own_server, name, "Failed") == []
    completed = list_jobs(own_server, name, "Completed")
    assert sorted(job["InferenceId"] for job in completed) == ids
    attempts = {job["InferenceId"]: job["Attempts"] for job in completed}
    # A job the model was running when the server died had no result yet: it ran again.
    assert {job_id: attempts[job_id] for job_id in in_flight} == dict.fromkeys(in_flight, 2)
    # One that had never started was claimed once, after the restart or before.
    assert set(attempts.values()) <= {1, 2}


def test_killed_worker_mid_job_is_retried(own_server: RunningServer, tmp_path: Path) -> None:
    name = unique("worker-kill")
    out = tmp_path / "out"
    deploy_async(own_server, name, out.as_uri(), failure=(tmp_path / "failed").as_uri())
    rt = own_server.client("sagemaker-runtime")
    probe = tmp_path / "probe"
    probe.write_bytes(b"who")
    rt.invoke_endpoint_async(
        EndpointName=name,
        InputLocation=probe.as_uri(),
        Accept="application/x-inspect",
        InferenceId="probe",
    )
    assert wait_finished(own_server, name, "probe")["Status"] == "Completed"
    pid: int = json.loads((out / "probe.out").read_bytes())["pid"]

    marker = tmp_path / "started"
    body = f"sleep:2@{marker}".encode()
    source = tmp_path / "slow"
    source.write_bytes(body)
    rt.invoke_endpoint_async(
        EndpointName=name, InputLocation=source.as_uri(), ContentType="text/plain", InferenceId="j"
    )
    deadline = time.monotonic() + 15
    while not marker.exists():
        assert time.monotonic() < deadline, "the job never reached the model"
        time.sleep(0.01)
    assert describe_job(own_server, name, "j")["Attempts"] == 1
    os.kill(pid, signal.SIGKILL)
    assert wait_gone({pid}) == set()

    job = wait_finished(own_server, name, "j")
    assert job["Status"] == "Completed", job
    assert job["Attempts"] == 2
    assert (out / "j.out").read_bytes() == body
    assert not (tmp_path / "failed").exists()


def test_thousand_jobs_run_once_each_within_the_concurrency_cap(
    own_server: RunningServer, tmp_path: Path
) -> None:
    name = unique("many-async")
    model_dir, inputs, out = tmp_path / "model", tmp_path / "in", tmp_path / "out"
    (model_dir / "code").mkdir(parents=True)
    (model_dir / "code" / "inference.py").write_text(COUNTING_MODEL)
    inputs.mkdir()
    state = tmp_path / "counter"
    deploy_async(
        own_server,
        name,
        out.as_uri(),
        concurrency=3,
        model_dir=model_dir,
        # The runtime alone would run 8 calls at once: any cap below that is the runner's.
        environment={
            "SAGEMAKER_MODEL_SERVER_WORKERS": "8",
            "COUNTING_STATE": str(state),
            "COUNTING_SLEEP": "0.01",
        },
    )
    total = 1000
    ids = [f"n{i:04d}" for i in range(total)]
    for job_id in ids:
        (inputs / job_id).write_bytes(f"body of {job_id}".encode())
    rt = own_server.client("sagemaker-runtime", max_pool_connections=16)

    def submit(job_id: str) -> str:
        reply = rt.invoke_endpoint_async(
            EndpointName=name,
            InputLocation=(inputs / job_id).as_uri(),
            ContentType="text/plain",
            InferenceId=job_id,
        )
        assert reply["ResponseMetadata"]["HTTPStatusCode"] == 202
        accepted: str = reply["InferenceId"]
        return accepted

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(submit, ids)) == ids
    backlog = wait_backlog_done(own_server, name, total, timeout=50)
    assert backlog == {"Queued": 0, "Running": 0, "Completed": total, "Failed": 0}

    now, peak = map(int, state.read_text().split())
    assert now == 0
    assert peak == 3
    calls = state.with_name("counter.calls").read_bytes().splitlines()
    assert sorted(calls) == [f"body of {job_id}".encode() for job_id in ids]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        f"{job_id}.out" for job_id in ids
    ]
    for job_id in ids:
        assert (out / f"{job_id}.out").read_bytes() == f"body of {job_id}".encode()
    completed = list_jobs(own_server, name, "Completed")
    assert sorted(job["InferenceId"] for job in completed) == ids
    assert {job["Attempts"] for job in completed} == {1}
