"""InvokeEndpointAsync on multi-container endpoints: a Serial pipeline runs every container;
Direct mode, which needs a TargetContainerHostname the async API cannot carry, fails the job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sagehost.testing.server import RunningServer
from tests.e2e.async_helpers import deploy_async, wait_finished
from tests.e2e.conftest import unique
from tests.e2e.test_multi_container import stage


def deploy_async_pipeline(
    server: RunningServer, name: str, containers: list[dict[str, Any]], output: Path, mode: str
) -> None:
    model = {"Containers": containers, "InferenceExecutionConfig": {"Mode": mode}}
    deploy_async(server, name, output.as_uri(), model=model)


def test_async_job_runs_the_whole_serial_pipeline(server: RunningServer, tmp_path: Path) -> None:
    name = unique("asyncserial")
    containers = [stage("a1", output="application/x-a1"), stage("a2"), stage("a3")]
    deploy_async_pipeline(server, name, containers, tmp_path / "out", "Serial")
    source = tmp_path / "in.json"
    source.write_bytes(b'{"n": 5}')
    reply = server.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=name,
        InputLocation=source.as_uri(),
        ContentType="application/json",
        Accept="application/json",
        InferenceId="serial-1",
    )
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 202
    job = wait_finished(server, name, "serial-1")
    assert job["Status"] == "Completed", job
    assert job["OutputContentType"] == "application/json"
    result = json.loads((tmp_path / "out" / "serial-1.out").read_bytes())
    assert result["n"] == 5
    assert [(t["stage"], t["content_type"]) for t in result["trail"]] == [
        ("a1", "application/json"),
        ("a2", "application/x-a1"),
        ("a3", "application/json"),
    ]


def test_async_job_on_a_direct_endpoint_fails_with_the_reason(
    server: RunningServer, tmp_path: Path
) -> None:
    name = unique("asyncdirect")
    deploy_async_pipeline(server, name, [stage("d1"), stage("d2")], tmp_path / "out", "Direct")
    source = tmp_path / "in.json"
    source.write_bytes(b"{}")
    server.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=name, InputLocation=source.as_uri(), InferenceId="direct-1"
    )
    job = wait_finished(server, name, "direct-1")
    assert job["Status"] == "Failed"
    assert job["FailureReason"] == (
        f"ValidationError: Endpoint {name} invokes its containers in Direct mode, and "
        "InvokeEndpointAsync cannot name a TargetContainerHostname."
    )
