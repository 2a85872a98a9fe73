"""Building endpoints for inference components and their components through boto3."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from tests.e2e.conftest import MODELS, unique

ACCOUNT = "000000000000"
REGION = "us-east-1"
BEHAVE_URL = (MODELS / "behave").as_uri()
NEEDS = {"MinMemoryRequiredInMb": 128, "NumberOfCpuCoresRequired": 0.25}


def arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name.lower()}"


def component_endpoint(sm: Any, name: str, variants: tuple[str, ...] = ("AllTraffic",)) -> None:
    """An endpoint config whose variants name no model, and an InService endpoint from it."""
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": v, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
            for v in variants
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    status = sm.describe_endpoint(EndpointName=name)["EndpointStatus"]
    assert status == "InService", status


def hosting(sm: Any, prefix: str, variants: tuple[str, ...] = ("AllTraffic",)) -> tuple[str, str]:
    """A behave model and an InService endpoint for components (of ``variants``), both
    named from ``prefix``: (endpoint, model)."""
    endpoint, model = unique(prefix), unique(f"{prefix}m")
    behave_model(sm, model)
    component_endpoint(sm, endpoint, variants)
    return endpoint, model


def model_endpoint(sm: Any, name: str, model: str) -> None:
    """An endpoint whose only variant serves ``model`` itself, so it hosts no components."""
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": 1}
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)


def behave_model(sm: Any, name: str, environment: dict[str, str] | None = None) -> None:
    container: dict[str, Any] = {"Image": "sagehost/python", "ModelDataUrl": BEHAVE_URL}
    if environment:
        container["Environment"] = environment
    sm.create_model(ModelName=name, PrimaryContainer=container)


def create_component(
    sm: Any,
    name: str,
    endpoint: str,
    model: str,
    copies: int = 1,
    variant: str = "AllTraffic",
    **extra: Any,
) -> str:
    created = sm.create_inference_component(
        InferenceComponentName=name,
        EndpointName=endpoint,
        VariantName=variant,
        Specification={"ModelName": model, "ComputeResourceRequirements": NEEDS},
        RuntimeConfig={"CopyCount": copies},
        **extra,
    )
    arn_: str = created["InferenceComponentArn"]
    return arn_


def container_specification(
    artifact_url: str = BEHAVE_URL, environment: dict[str, str] | None = None
) -> dict[str, Any]:
    """A Specification that runs a container of its own rather than a ModelName."""
    container: dict[str, Any] = {"Image": "sagehost/python", "ArtifactUrl": artifact_url}
    if environment is not None:
        container["Environment"] = environment
    return {"Container": container, "ComputeResourceRequirements": NEEDS}


def create_container_component(
    sm: Any,
    name: str,
    endpoint: str,
    artifact_url: str = BEHAVE_URL,
    environment: dict[str, str] | None = None,
) -> None:
    """One copy of ``container_specification(...)``, on the endpoint's only variant (the
    call names none)."""
    sm.create_inference_component(
        InferenceComponentName=name,
        EndpointName=endpoint,
        Specification=container_specification(artifact_url, environment),
        RuntimeConfig={"CopyCount": 1},
    )


def settled(sm: Any, name: str) -> dict[str, Any]:
    """DescribeInferenceComponent, which waits for a change in progress to settle."""
    described: dict[str, Any] = sm.describe_inference_component(InferenceComponentName=name)
    return described


def invoke(rt: Any, endpoint: str, component: str, body: bytes = b"hello", **extra: Any) -> Any:
    return rt.invoke_endpoint(
        EndpointName=endpoint,
        InferenceComponentName=component,
        Body=body,
        ContentType="text/plain",
        **extra,
    )


def pid_of(rt: Any, endpoint: str, component: str) -> int:
    reply = invoke(rt, endpoint, component, Accept="application/x-inspect")
    pid: int = json.loads(reply["Body"].read())["pid"]
    return pid


def error_of(call: Callable[[], Any]) -> tuple[int, str, str]:
    """(HTTP status, error code, message) of a call that must fail."""
    try:
        call()
    except ClientError as error:
        response = error.response
        return (
            response["ResponseMetadata"]["HTTPStatusCode"],
            response["Error"]["Code"],
            response["Error"]["Message"],
        )
    raise AssertionError("the call succeeded")


def eventually(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
