"""``--job-retention``: a finished async job's record is forgotten after the retention, its
result is not, and jobs still queued or running are never forgotten."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sagehost.testing.server import RunningServer, free_port
from tests.e2e.async_helpers import deploy_async, wait_finished
from tests.e2e.conftest import unique
from tests.e2e.signed import own_call

ACCOUNT = "000000000000"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(
        data_dir=tmp_path_factory.mktemp("retention") / "data",
        port=free_port(),
        args=["--job-retention", "1"],
    )
    running.start()
    yield running
    running.stop()


def test_finished_jobs_are_forgotten_after_the_retention(
    server: RunningServer, tmp_path: Path
) -> None:
    name = unique("retained")
    deploy_async(server, name, (tmp_path / "out").as_uri(), concurrency=1)
    rt = server.client("sagemaker-runtime")
    (tmp_path / "quick.txt").write_bytes(b"quick")
    (tmp_path / "slow.txt").write_bytes(b"sleep:6")
    rt.invoke_endpoint_async(
        EndpointName=name,
        InputLocation=(tmp_path / "quick.txt").as_uri(),
        ContentType="text/plain",
        InferenceId="quick",
    )
    assert wait_finished(server, name, "quick")["Status"] == "Completed"
    # One job slot: "slow" runs for 6 s while "queued" waits behind it, both past the retention.
    for inference_id, source in (("slow", "slow.txt"), ("queued", "quick.txt")):
        rt.invoke_endpoint_async(
            EndpointName=name,
            InputLocation=(tmp_path / source).as_uri(),
            ContentType="text/plain",
            InferenceId=inference_id,
        )
    deadline = time.monotonic() + 10
    while True:
        status, answer = own_call(
            server,
            "SageHost.DescribeAsyncInference",
            {"EndpointName": name, "InferenceId": "quick"},
        )
        if status == 400:
            break
        assert time.monotonic() < deadline, f"the finished job is still listed: {answer}"
        time.sleep(0.2)
    assert answer["message"] == (
        f"No async inference quick for endpoint {name} of account {ACCOUNT}."
    )
    assert (tmp_path / "out" / "quick.out").read_bytes() == b"quick"  # the result stays
    for inference_id, expected in (("slow", "Running"), ("queued", "Queued")):
        status, answer = own_call(
            server,
            "SageHost.DescribeAsyncInference",
            {"EndpointName": name, "InferenceId": inference_id},
        )
        assert (status, answer["Job"]["Status"]) == (200, expected)
