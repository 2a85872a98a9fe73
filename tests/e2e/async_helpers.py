"""Helpers shared by the async inference tests: deploying an async endpoint and reading job
state through sagehost's signed status operations."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from sagehost.testing.server import DEV_KEY, DEV_SECRET, RunningServer
from tests.e2e.conftest import MODELS


def deploy_async(
    server: RunningServer,
    name: str,
    output: str,
    *,
    failure: str | None = None,
    concurrency: int | None = None,
    notification: dict[str, Any] | None = None,
    model_dir: Path = MODELS / "behave",
    environment: dict[str, str] | None = None,
) -> None:
    """CreateModel, CreateEndpointConfig with an AsyncInferenceConfig, CreateEndpoint."""
    sm = server.client("sagemaker")
    container: dict[str, Any] = {"Image": "sagehost/python", "ModelDataUrl": model_dir.as_uri()}
    if environment:
        container["Environment"] = environment
    sm.create_model(ModelName=name, PrimaryContainer=container)
    output_config: dict[str, Any] = {"S3OutputPath": output}
    if failure is not None:
        output_config["S3FailurePath"] = failure
    if notification is not None:
        output_config["NotificationConfig"] = notification
    async_config: dict[str, Any] = {"OutputConfig": output_config}
    if concurrency is not None:
        async_config["ClientConfig"] = {"MaxConcurrentInvocationsPerInstance": concurrency}
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}
        ],
        AsyncInferenceConfig=async_config,
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    described = sm.describe_endpoint(EndpointName=name)
    assert described["EndpointStatus"] == "InService", described
    assert described["AsyncInferenceConfig"] == async_config


def signed_call(server: RunningServer, target: str, params: dict[str, Any]) -> dict[str, Any]:
    """One of sagehost's own JSON 1.1 operations, signed as boto3 would sign it."""
    body = json.dumps(params).encode()
    request = AWSRequest(
        method="POST",
        url=f"{server.url}/",
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target},
    )
    SigV4Auth(Credentials(DEV_KEY, DEV_SECRET), "sagemaker", "us-east-1").add_auth(request)
    raw = urllib.request.Request(
        f"{server.url}/", data=body, headers=dict(request.headers.items()), method="POST"
    )
    with urllib.request.urlopen(raw, timeout=10) as reply:
        answer: dict[str, Any] = json.loads(reply.read())
        return answer


def describe_job(server: RunningServer, endpoint: str, inference_id: str) -> dict[str, Any]:
    job: dict[str, Any] = signed_call(
        server,
        "SageHost.DescribeAsyncInference",
        {"EndpointName": endpoint, "InferenceId": inference_id},
    )["Job"]
    return job


def wait_finished(
    server: RunningServer, endpoint: str, inference_id: str, timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = describe_job(server, endpoint, inference_id)
        if job["Status"] in ("Completed", "Failed"):
            return job
        assert time.monotonic() < deadline, f"job {inference_id} still {job['Status']}"
        time.sleep(0.05)


def list_jobs(server: RunningServer, endpoint: str, status: str | None = None) -> list[Any]:
    """Every job of the endpoint (optionally in one status), following NextToken."""
    params: dict[str, Any] = {"EndpointName": endpoint, "MaxResults": 100}
    if status is not None:
        params["StatusEquals"] = status
    jobs: list[Any] = []
    while True:
        page = signed_call(server, "SageHost.ListAsyncInferences", params)
        jobs.extend(page["Jobs"])
        if "NextToken" not in page:
            return jobs
        params["NextToken"] = page["NextToken"]


def wait_backlog_done(
    server: RunningServer, endpoint: str, total: int, timeout: float
) -> dict[str, int]:
    """Poll the endpoint's backlog until ``total`` jobs are Completed or Failed."""
    deadline = time.monotonic() + timeout
    while True:
        backlog: dict[str, int] = signed_call(
            server, "SageHost.ListAsyncInferences", {"EndpointName": endpoint, "MaxResults": 1}
        )["Backlog"]
        if backlog["Completed"] + backlog["Failed"] >= total:
            return backlog
        assert time.monotonic() < deadline, f"jobs unfinished: {backlog}"
        time.sleep(0.1)
