"""InvokeEndpoint through boto3's sagemaker-runtime client against a live server."""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from typing import Any

import pytest

from tests.e2e.conftest import deploy, unique

ACCOUNT = "000000000000"
SIX_MIB = 6 * 1024 * 1024


@pytest.fixture(scope="module")
def endpoint(sm: Any) -> str:
    name = unique("inv")
    deploy(sm, name)
    return name


def test_round_trip_with_every_header(rt: Any, endpoint: str) -> None:
    reply = rt.invoke_endpoint(
        EndpointName=endpoint,
        Body=b'{"x": 1}',
        ContentType="application/json",
        Accept="application/x-inspect",
        CustomAttributes="  trace=abc   user=7 ",
        InferenceId="req-42",
        EnableExplanations="`true`",
    )
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert reply["ContentType"] == "application/json"
    assert reply["InvokedProductionVariant"] == "AllTraffic"
    assert len(reply["ResponseMetadata"]["RequestId"]) == 36
    seen = json.loads(reply["Body"].read())
    headers = seen["headers"]
    assert seen["body"] == '{"x": 1}'
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/x-inspect"
    assert headers["x-amzn-sagemaker-custom-attributes"] == "trace=abc   user=7"
    assert headers["x-amzn-sagemaker-inference-id"] == "req-42"
    assert headers["x-amzn-sagemaker-enable-explanations"] == "`true`"
    # Nothing of the caller's signature or SDK reaches the container.
    for leaked in (
        "authorization",
        "x-amz-date",
        "user-agent",
        "amz-sdk-invocation-id",
        "amz-sdk-request",
        "x-amz-security-token",
    ):
        assert leaked not in headers


def test_echo_exact_bytes_and_custom_attributes(rt: Any, endpoint: str) -> None:
    body = bytes(range(256)) * 4
    reply = rt.invoke_endpoint(
        EndpointName=endpoint,
        Body=body,
        ContentType="application/octet-stream",
        CustomAttributes="c=1",
    )
    assert reply["Body"].read() == body
    assert reply["ContentType"] == "application/octet-stream"
    assert reply["CustomAttributes"] == "echo:c=1"


def test_no_content_type_is_forwarded_as_none(rt: Any, endpoint: str) -> None:
    reply = rt.invoke_endpoint(EndpointName=endpoint, Body=b"abc", Accept="application/x-inspect")
    assert "content-type" not in json.loads(reply["Body"].read())["headers"]


def test_model_error_carries_original_status_and_message(rt: Any, endpoint: str) -> None:
    with pytest.raises(rt.exceptions.ModelError) as error:
        rt.invoke_endpoint(EndpointName=endpoint, Body=b"status:404", ContentType="text/plain")
    response = error.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["Error"]["Code"] == "ModelError"
    assert response["OriginalStatusCode"] == 404
    assert response["OriginalMessage"] == "custom status 404"
    assert response["LogStreamArn"] == (
        f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{endpoint}"
    )
    assert response["Error"]["Message"].startswith(
        'Received client error (404) from primary with message "custom status 404".'
    )


def test_model_exception_is_424_never_5xx(rt: Any, endpoint: str) -> None:
    with pytest.raises(rt.exceptions.ModelError) as error:
        rt.invoke_endpoint(
            EndpointName=endpoint, Body=b"raise:cannot divide", ContentType="text/plain"
        )
    response = error.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == 500
    assert response["OriginalMessage"] == "cannot divide"
    assert "Traceback" not in response["Error"]["Message"]
    assert response["Error"]["Message"].startswith(
        'Received server error (500) from primary with message "cannot divide"'
    )


def test_unknown_endpoint(rt: Any) -> None:
    with pytest.raises(rt.exceptions.ValidationError) as error:
        rt.invoke_endpoint(EndpointName="does-not-exist", Body=b"x")
    response = error.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert (
        response["Error"]["Message"] == f"Endpoint does-not-exist of account {ACCOUNT} not found."
    )


def test_header_validation(rt: Any, endpoint: str) -> None:
    with pytest.raises(rt.exceptions.ValidationError) as error:
        rt.invoke_endpoint(EndpointName=endpoint, Body=b"x", CustomAttributes="x" * 1025)
    assert (
        "Member must have length less than or equal to 1024"
        in error.value.response["Error"]["Message"]
    )
    with pytest.raises(rt.exceptions.ValidationError) as error:
        rt.invoke_endpoint(EndpointName=endpoint, Body=b"x", TargetVariant="bad_variant")
    assert "targetVariant" in error.value.response["Error"]["Message"]
    with pytest.raises(rt.exceptions.ValidationError) as error:
        rt.invoke_endpoint(EndpointName=endpoint, Body=b"x", TargetVariant="Nope")
    assert error.value.response["Error"]["Message"] == (
        f"Variant Nope was not found for endpoint {endpoint} of account {ACCOUNT}."
    )
    with pytest.raises(rt.exceptions.ValidationError):
        rt.invoke_endpoint(EndpointName=endpoint, Body=b"x", TargetModel="m.tar.gz")
    with pytest.raises(rt.exceptions.ValidationError):
        rt.invoke_endpoint(EndpointName=endpoint, Body=b"x", TargetContainerHostname="c1")


def test_six_mib_boundary(rt: Any, endpoint: str) -> None:
    exact = b"a" * SIX_MIB
    reply = rt.invoke_endpoint(
        EndpointName=endpoint, Body=exact, ContentType="application/octet-stream"
    )
    assert reply["Body"].read() == exact
    with pytest.raises(rt.exceptions.ValidationError) as error:
        rt.invoke_endpoint(
            EndpointName=endpoint, Body=exact + b"a", ContentType="application/octet-stream"
        )
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_timeout_answers_model_error(sm: Any, rt: Any) -> None:
    name = unique("slow")
    deploy(sm, name, config_tags=[{"Key": "sagehost:invocation-timeout-seconds", "Value": "1"}])
    with pytest.raises(rt.exceptions.ModelError) as error:
        rt.invoke_endpoint(EndpointName=name, Body=b"sleep:3", ContentType="text/plain")
    response = error.value.response
    assert response["OriginalStatusCode"] == 0
    assert (
        "timed out while waiting for a response from container primary"
        in response["Error"]["Message"]
    )
    # The endpoint serves again once the model is done with the call that timed out.
    deadline = time.monotonic() + 10
    while True:
        try:
            reply = rt.invoke_endpoint(EndpointName=name, Body=b"ok", ContentType="text/plain")
            break
        except rt.exceptions.ModelError:
            assert time.monotonic() < deadline, "the endpoint never recovered from the timeout"
    assert reply["Body"].read() == b"ok"


def test_variant_weights_are_honoured_statistically(sm: Any, rt: Any) -> None:
    name = unique("split")
    deploy(
        sm,
        name,
        variants=[
            {
                "VariantName": "Heavy",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InitialVariantWeight": 3,
            },
            {
                "VariantName": "Light",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InitialVariantWeight": 1,
            },
            {
                "VariantName": "Off",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InitialVariantWeight": 0,
            },
        ],
    )
    calls = 400
    counts = Counter(
        rt.invoke_endpoint(EndpointName=name, Body=b"x")["InvokedProductionVariant"]
        for _ in range(calls)
    )
    assert counts["Off"] == 0
    # Binomial(400, 0.75): mean 300, sd ~8.7; five sd either side fails once in millions of runs.
    assert abs(counts["Heavy"] - 300) < 5 * math.sqrt(calls * 0.75 * 0.25)
    assert counts["Heavy"] + counts["Light"] == calls
    targeted = rt.invoke_endpoint(EndpointName=name, Body=b"x", TargetVariant="Off")
    assert targeted["InvokedProductionVariant"] == "Off"


def test_requests_spread_across_instances(sm: Any, rt: Any) -> None:
    name = unique("spread")
    deploy(
        sm,
        name,
        variants=[{"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 3}],
    )
    pids = {
        json.loads(
            rt.invoke_endpoint(EndpointName=name, Body=b"x", Accept="application/x-inspect")[
                "Body"
            ].read()
        )["pid"]
        for _ in range(60)
    }
    assert len(pids) == 3
