"""Helpers shared by the async inference tests: deploying an async endpoint and reading job
state through sagehost's signed status operations."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sagehost.testing.server import RunningServer
from tests.e2e.conftest import MODELS
from tests.e2e.signed import signed_call


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
    model: dict[str, Any] | None = None,
    sm: Any = None,
) -> None:
    """CreateModel, CreateEndpointConfig with an AsyncInferenceConfig, CreateEndpoint.

    The model runs ``model_dir`` with ``environment`` in the built-in runtime, unless ``model``
    gives CreateModel's parameters (but its name). ``sm`` is the client to deploy with (the dev
    account's by default)."""
    sm = sm or server.client("sagemaker")
    if model is None:
        container: dict[str, Any] = {
            "Image": "sagehost/python",
            "ModelDataUrl": model_dir.as_uri(),
        }
        if environment:
            container["Environment"] = environment
        model = {"PrimaryContainer": container}
    sm.create_model(ModelName=name, **model)
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
