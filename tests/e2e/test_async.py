"""InvokeEndpointAsync through boto3: inputs and outputs in S3 (moto) and files, failures,
naming, validation, timeouts, and the job status the CLI reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from sagehost.testing.moto import moto_client, moto_environment, running_moto
from sagehost.testing.server import RunningServer, free_port
from tests.e2e.async_helpers import deploy_async, wait_finished
from tests.e2e.conftest import deploy, unique


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, Any]]:
    with running_moto() as moto:
        s3 = moto_client(moto)
        s3.create_bucket(Bucket="io-bucket")
        yield {"moto": moto, "s3": s3}


@pytest.fixture(scope="module")
def server(
    env: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    variables = moto_environment(env["moto"], "S3", "SNS")
    running = RunningServer(
        data_dir=tmp_path_factory.mktemp("async") / "data", port=free_port(), env=variables
    )
    running.start()
    yield running
    running.stop()


def test_s3_input_to_s3_output(server: RunningServer, env: dict[str, Any]) -> None:
    s3 = env["s3"]
    name = unique("s3async")
    deploy_async(
        server, name, "s3://io-bucket/results", failure="s3://io-bucket/failures", concurrency=2
    )
    s3.put_object(Bucket="io-bucket", Key="in/one.json", Body=b'{"rows": [1, 2]}')
    rt = server.client("sagemaker-runtime")
    reply = rt.invoke_endpoint_async(
        EndpointName=name,
        InputLocation="s3://io-bucket/in/one.json",
        ContentType="application/json",
        InferenceId="job-1",
    )
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert reply["InferenceId"] == "job-1"
    assert reply["OutputLocation"] == "s3://io-bucket/results/job-1.out"
    assert reply["FailureLocation"] == "s3://io-bucket/failures/job-1-error.out"
    job = wait_finished(server, name, "job-1")
    assert job["Status"] == "Completed"
    assert job["OutputContentType"] == "application/json"
    stored = s3.get_object(Bucket="io-bucket", Key="results/job-1.out")
    assert stored["Body"].read() == b'{"rows": [1, 2]}'
    assert stored["ContentType"] == "application/json"


def test_file_input_to_file_output_with_extension_and_filename(
    server: RunningServer, tmp_path: Path
) -> None:
    name = unique("fileasync")
    deploy_async(server, name, (tmp_path / "out").as_uri())
    source = tmp_path / "input.bin"
    source.write_bytes(bytes(range(256)) * 100)
    rt = server.client("sagemaker-runtime")
    reply = rt.invoke_endpoint_async(
        EndpointName=name,
        InputLocation=source.as_uri(),
        ContentType="application/octet-stream",
        S3OutputPathExtension="batch/7",
        Filename="result.bin",
    )
    assert reply["OutputLocation"] == (tmp_path / "out" / "batch" / "7" / "result.bin").as_uri()
    assert "FailureLocation" not in reply
    assert wait_finished(server, name, reply["InferenceId"])["Status"] == "Completed"
    assert (tmp_path / "out/batch/7/result.bin").read_bytes() == source.read_bytes()


def test_model_failure_goes_to_the_failure_path(server: RunningServer, tmp_path: Path) -> None:
    name = unique("failasync")
    deploy_async(server, name, (tmp_path / "ok").as_uri(), failure=(tmp_path / "bad").as_uri())
    source = tmp_path / "in.txt"
    source.write_bytes(b"raise:the model is unhappy")
    rt = server.client("sagemaker-runtime")
    reply = rt.invoke_endpoint_async(
        EndpointName=name, InputLocation=source.as_uri(), ContentType="text/plain", InferenceId="f1"
    )
    job = wait_finished(server, name, "f1")
    assert job["Status"] == "Failed"
    assert job["FailureReason"].startswith("ClientError: Received server error (500) from model.")
    assert job["FailureLocation"] == reply["FailureLocation"]
    assert (tmp_path / "bad" / "f1-error.out").read_bytes() == b"the model is unhappy"
    assert not (tmp_path / "ok" / "f1.out").exists()


def test_invocation_timeout(server: RunningServer, tmp_path: Path) -> None:
    name = unique("slowasync")
    deploy_async(server, name, (tmp_path / "ok").as_uri(), failure=(tmp_path / "bad").as_uri())
    source = tmp_path / "in.txt"
    source.write_bytes(b"sleep:3")
    rt = server.client("sagemaker-runtime")
    rt.invoke_endpoint_async(
        EndpointName=name,
        InputLocation=source.as_uri(),
        ContentType="text/plain",
        InferenceId="t1",
        InvocationTimeoutSeconds=1,
    )
    job = wait_finished(server, name, "t1")
    assert job["Status"] == "Failed"
    assert "did not finish within 1 seconds" in job["FailureReason"]
    assert (tmp_path / "bad" / "t1-error.out").exists()


def test_validation(server: RunningServer, tmp_path: Path) -> None:
    name = unique("valasync")
    deploy_async(server, name, (tmp_path / "ok").as_uri())
    rt = server.client("sagemaker-runtime")
    with pytest.raises(rt.exceptions.ValidationError) as error:
        rt.invoke_endpoint(EndpointName=name, Body=b"x")
    assert "use InvokeEndpointAsync" in error.value.response["Error"]["Message"]
    with pytest.raises(rt.exceptions.ValidationError) as error:
        rt.invoke_endpoint_async(
            EndpointName=name, InputLocation="s3://b/k", InvocationTimeoutSeconds=3601
        )
    assert "invocationTimeoutSeconds" in error.value.response["Error"]["Message"]
    with pytest.raises(rt.exceptions.ValidationError) as error:
        rt.invoke_endpoint_async(EndpointName=name, InputLocation="ftp://host/file")
    assert "inputLocation" in error.value.response["Error"]["Message"]
    with pytest.raises(rt.exceptions.ValidationError) as error:
        rt.invoke_endpoint_async(EndpointName=name, InputLocation="s3://b/k", Filename="a.b.c")
    assert "filename" in error.value.response["Error"]["Message"]
    realtime = unique("rtonly")
    deploy(server.client("sagemaker"), realtime)
    with pytest.raises(rt.exceptions.ValidationError) as error:
        rt.invoke_endpoint_async(EndpointName=realtime, InputLocation="s3://b/k")
    assert "real-time endpoint" in error.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("header", "value", "member"),
    [
        ("X-Amzn-SageMaker-RequestTTLSeconds", "30", "requestTTLSeconds"),
        ("X-Amzn-SageMaker-InvocationTimeoutSeconds", "0", "invocationTimeoutSeconds"),
        (None, None, "inputLocation"),
    ],
)
def test_limits_botocore_does_not_check(
    server: RunningServer, header: str | None, value: str | None, member: str
) -> None:
    """botocore only checks minimums (and requires InputLocation), so send these by hand."""
    headers = {"X-Amzn-SageMaker-InputLocation": "s3://b/k"}
    if header is None:
        headers = {}
    else:
        headers[header] = str(value)
    request = AWSRequest(
        method="POST", url=f"{server.url}/endpoints/x/async-invocations", data=b"", headers=headers
    )
    SigV4Auth(Credentials("test", "test"), "sagemaker", "us-east-1").add_auth(request)
    raw = urllib.request.Request(
        request.url, data=b"", headers=dict(request.headers.items()), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(raw, timeout=10)
    assert error.value.code == 400
    assert error.value.headers["X-Amzn-ErrorType"] == "ValidationError"
    assert member in json.loads(error.value.read())["Message"]


def test_jobs_cli(server: RunningServer, tmp_path: Path) -> None:
    name = unique("cliasync")
    deploy_async(server, name, (tmp_path / "ok").as_uri())
    source = tmp_path / "in.txt"
    source.write_bytes(b"hello")
    server.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=name,
        InputLocation=source.as_uri(),
        ContentType="text/plain",
        InferenceId="cli-1",
    )
    wait_finished(server, name, "cli-1")
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    got = subprocess.run(
        [sys.executable, "-m", "sagehost", "jobs", "--url", server.url, "get", name, "cli-1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert got.returncode == 0, got.stderr
    answer = json.loads(got.stdout)
    assert answer["Job"]["Status"] == "Completed"
    assert answer["Job"]["OutputLocation"] == (tmp_path / "ok" / "cli-1.out").as_uri()
    assert answer["Backlog"] == {"Queued": 0, "Running": 0, "Completed": 1, "Failed": 0}
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "sagehost",
            "jobs",
            "--url",
            server.url,
            "list",
            "--endpoint",
            name,
            "--status",
            "Completed",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert listed.returncode == 0, listed.stderr
    assert [job["InferenceId"] for job in json.loads(listed.stdout)["Jobs"]] == ["cli-1"]
    missing = subprocess.run(
        [sys.executable, "-m", "sagehost", "jobs", "--url", server.url, "get", name, "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert missing.returncode == 1
    assert "ValidationException" in missing.stderr
