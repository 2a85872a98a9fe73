"""Multi-container endpoints (§7.4): Serial pipelines and Direct invocation, through boto3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import MODELS, unique

ACCOUNT = "000000000000"
STAGE = MODELS / "stage"


def stage(name: str, *, hostname: bool = True, output: str = "application/json") -> dict[str, Any]:
    """A container running the ``stage`` test model as ``name``."""
    container: dict[str, Any] = {
        "Image": "sagehost/python",
        "ModelDataUrl": STAGE.as_uri(),
        "Environment": {"STAGE": name, "STAGE_TYPE": output},
    }
    if hostname:
        container["ContainerHostname"] = name
    return container


def model_params(name: str, containers: list[dict[str, Any]], mode: str | None) -> dict[str, Any]:
    """CreateModel's parameters for a model of ``containers`` in ``mode`` (None: the default)."""
    model: dict[str, Any] = {"ModelName": name, "Containers": containers}
    if mode is not None:
        model["InferenceExecutionConfig"] = {"Mode": mode}
    return model


def deploy_model(
    sm: Any,
    name: str,
    containers: list[dict[str, Any]],
    *,
    mode: str | None = None,
    tags: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    sm.create_model(**model_params(name, containers, mode))
    config: dict[str, Any] = {
        "EndpointConfigName": name,
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}
        ],
    }
    if tags:
        config["Tags"] = tags
    sm.create_endpoint_config(**config)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    description: dict[str, Any] = sm.describe_endpoint(EndpointName=name)
    return description


def in_service(sm: Any, prefix: str, containers: list[dict[str, Any]], **options: Any) -> str:
    """The name of an InService endpoint of a model of ``containers`` (see ``deploy_model``)."""
    name = unique(prefix)
    described = deploy_model(sm, name, containers, **options)
    assert described["EndpointStatus"] == "InService", described
    return name


@pytest.fixture(scope="module")
def serial(sm: Any) -> str:
    containers = [
        stage("c1", output="application/x-c1"),
        stage("c2", output="application/x-c2"),
        stage("c3"),
    ]
    return in_service(sm, "serial", containers)


@pytest.fixture(scope="module")
def direct(sm: Any) -> str:
    return in_service(sm, "direct", [stage("d1"), stage("d2", output="text/plain")], mode="Direct")


@pytest.fixture(scope="module")
def tagged(sm: Any) -> str:
    """Two unnamed containers; intermediate Accept text/csv; a 2-second invocation deadline."""
    return in_service(
        sm,
        "tagged",
        [stage("t1", hostname=False), stage("t2", hostname=False)],
        tags=[
            {"Key": "sagehost:pipeline-accept", "Value": "text/csv"},
            {"Key": "sagehost:invocation-timeout-seconds", "Value": "2"},
        ],
    )


def invoke(rt: Any, name: str, request: dict[str, Any], **extra: Any) -> Any:
    return rt.invoke_endpoint(
        EndpointName=name, Body=json.dumps(request), ContentType="application/json", **extra
    )


def refused(rt: Any, name: str, request: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The error response of an invocation that must fail with a ValidationError."""
    with pytest.raises(rt.exceptions.ValidationError) as error:
        invoke(rt, name, request, **extra)
    response: dict[str, Any] = error.value.response
    return response


def failed(rt: Any, name: str, request: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The error response of an invocation that must fail with a ModelError."""
    with pytest.raises(rt.exceptions.ModelError) as error:
        invoke(rt, name, request, **extra)
    response: dict[str, Any] = error.value.response
    return response


def parts(response: Any) -> list[bytes]:
    return [event["PayloadPart"]["Bytes"] for event in response["Body"]]


def test_serial_pipeline_feeds_each_answer_to_the_next(rt: Any, serial: str) -> None:
    reply = invoke(rt, serial, {"x": 1}, Accept="application/json", CustomAttributes="trace=7")
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert reply["InvokedProductionVariant"] == "AllTraffic"
    assert reply["ContentType"] == "application/json"  # the last container's type
    assert reply["CustomAttributes"] == "from=c3"
    body = json.loads(reply["Body"].read())
    assert body == {
        "x": 1,
        "trail": [
            {
                "stage": "c1",
                "content_type": "application/json",
                "accept": "application/json",
                "custom": "trace=7",
            },
            {
                "stage": "c2",
                "content_type": "application/x-c1",
                "accept": "application/json",
                "custom": "trace=7",
            },
            {
                "stage": "c3",
                "content_type": "application/x-c2",
                "accept": "application/json",
                "custom": "trace=7",
            },
        ],
    }


def test_serial_pipeline_is_described_with_every_image(sm: Any, serial: str) -> None:
    variant = sm.describe_endpoint(EndpointName=serial)["ProductionVariants"][0]
    assert [i["SpecifiedImage"] for i in variant["DeployedImages"]] == ["sagehost/python"] * 3
    assert variant["CurrentInstanceCount"] == 1
    model = sm.describe_model(ModelName=serial)
    assert [c["ContainerHostname"] for c in model["Containers"]] == ["c1", "c2", "c3"]


def test_a_failing_container_is_named_in_the_model_error(rt: Any, serial: str) -> None:
    response = failed(rt, serial, {"fail": {"c2": 503}})
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == 503
    assert response["OriginalMessage"] == "c2 failed on purpose"
    assert response["Error"]["Message"].startswith(
        'Received server error (503) from c2 with message "c2 failed on purpose".'
    )
    assert failed(rt, serial, {"fail": {"c3": 404}})["Error"]["Message"].startswith(
        'Received client error (404) from c3 with message "c3 failed on purpose".'
    )


def test_serial_pipeline_streams_its_last_container(rt: Any, serial: str) -> None:
    response = rt.invoke_endpoint_with_response_stream(
        EndpointName=serial,
        Body=json.dumps({"prefix": "", "stream": {"c3": 3}}),
        ContentType="application/json",
    )
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert parts(response) == [b"c1.c2.c3.0 ", b"c1.c2.c3.1 ", b"c1.c2.c3.2 "]


def test_serial_stream_failure_before_the_last_container_is_a_model_error(
    rt: Any, serial: str
) -> None:
    with pytest.raises(rt.exceptions.ModelError) as error:
        rt.invoke_endpoint_with_response_stream(
            EndpointName=serial,
            Body=json.dumps({"stream": {"c3": 3}, "fail": {"c1": 500}}),
            ContentType="application/json",
        )
    assert error.value.response["Error"]["Message"].startswith(
        'Received server error (500) from c1 with message "c1 failed on purpose".'
    )


def test_target_container_hostname_is_refused_by_a_serial_endpoint(rt: Any, serial: str) -> None:
    response = refused(rt, serial, {}, TargetContainerHostname="c1")
    assert response["Error"]["Message"] == (
        f"Endpoint {serial} of account {ACCOUNT} is not a multi-container endpoint in Direct "
        "mode; remove TargetContainerHostname."
    )


def test_sessions_are_refused_by_a_pipeline(rt: Any, serial: str) -> None:
    response = refused(rt, serial, {}, SessionId="NEW_SESSION")
    assert response["Error"]["Message"] == (
        f"Variant AllTraffic of endpoint {serial} of account {ACCOUNT} serves a multi-container "
        "model; sagehost supports stateful sessions only on single-container models."
    )


def test_direct_mode_calls_only_the_named_container(rt: Any, direct: str) -> None:
    reply = invoke(rt, direct, {"x": 2}, TargetContainerHostname="d2", Accept="text/csv")
    assert reply["ContentType"] == "text/plain"
    assert reply["CustomAttributes"] == "from=d2"
    assert json.loads(reply["Body"].read()) == {
        "x": 2,
        "trail": [
            {
                "stage": "d2",
                "content_type": "application/json",
                "accept": "text/csv",
                "custom": None,
            }
        ],
    }
    reply = invoke(rt, direct, {}, TargetContainerHostname="d1")
    assert [t["stage"] for t in json.loads(reply["Body"].read())["trail"]] == ["d1"]


def test_direct_mode_streams_the_named_container(rt: Any, direct: str) -> None:
    response = rt.invoke_endpoint_with_response_stream(
        EndpointName=direct,
        Body=json.dumps({"prefix": "", "stream": {"d2": 2}}),
        ContentType="application/json",
        TargetContainerHostname="d2",
    )
    assert response["ContentType"] == "text/plain"
    assert parts(response) == [b"d2.0 ", b"d2.1 "]


def test_direct_mode_validation_errors(rt: Any, direct: str) -> None:
    assert refused(rt, direct, {})["Error"]["Message"] == (
        f"Endpoint {direct} of account {ACCOUNT} invokes its containers in Direct mode; name one "
        "with TargetContainerHostname."
    )
    response = refused(rt, direct, {}, TargetContainerHostname="d3")
    assert response["Error"]["Message"] == (
        f"Container hostname d3 was not found for endpoint {direct} of account {ACCOUNT}."
    )
    with pytest.raises(rt.exceptions.ValidationError) as error:
        rt.invoke_endpoint_with_response_stream(EndpointName=direct, Body=b"{}")
    assert error.value.response["Error"]["Message"].endswith(
        "invokes its containers in Direct mode; name one with TargetContainerHostname."
    )
    response = refused(rt, direct, {}, TargetContainerHostname="bad_name")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_direct_failure_names_the_container(rt: Any, direct: str) -> None:
    response = failed(rt, direct, {"fail": {"d1": 418}}, TargetContainerHostname="d1")
    assert response["Error"]["Message"].startswith(
        'Received client error (418) from d1 with message "d1 failed on purpose".'
    )


def test_default_hostnames_and_the_intermediate_accept_tag(rt: Any, tagged: str) -> None:
    reply = invoke(rt, tagged, {}, Accept="application/json")
    trail = json.loads(reply["Body"].read())["trail"]
    assert [(t["stage"], t["accept"]) for t in trail] == [
        ("t1", "text/csv"),
        ("t2", "application/json"),
    ]
    assert failed(rt, tagged, {"fail": {"t2": 500}})["Error"]["Message"].startswith(
        'Received server error (500) from container-2 with message "t2 failed on purpose".'
    )


def test_the_pipeline_shares_one_invocation_deadline(rt: Any, tagged: str) -> None:
    # Each container alone answers well within the 2-second deadline; together they do not.
    response = failed(rt, tagged, {"sleep": {"t1": 1.2, "t2": 1.2}})
    assert response["OriginalStatusCode"] == 0
    assert response["OriginalMessage"] == (
        "Your invocation timed out while waiting for a response from container container-2."
    )


@pytest.mark.parametrize(
    ("containers", "mode", "message"),
    [
        (
            [stage("a"), stage("b", hostname=False)],
            "Direct",
            "Model {name} invokes its containers in Direct mode, so every container needs a "
            "ContainerHostname.",
        ),
        (
            [stage("a"), stage("b", hostname=False)],
            None,
            "Either every container of model {name} has a ContainerHostname or none does.",
        ),
        (
            [stage("a"), stage("A")],
            None,
            "ContainerHostname A names more than one container of model {name}.",
        ),
        (
            [{**stage("a"), "Mode": "MultiModel"}, {**stage("b"), "Mode": "MultiModel"}],
            None,
            "Model {name} has 2 containers in MultiModel mode; a multi-container model may "
            "have at most one.",
        ),
        (
            [{**stage("a"), "Mode": "MultiModel"}, stage("b")],
            None,
            "Model {name} has a container in MultiModel mode among others; sagehost does not "
            "support multi-model containers in a multi-container model yet. Deploy it as a "
            "model of its own.",
        ),
    ],
)
def test_create_model_refuses_containers_that_cannot_run(
    sm: Any, containers: list[dict[str, Any]], mode: str | None, message: str
) -> None:
    name = unique("bad")
    with pytest.raises(sm.exceptions.ClientError) as error:
        sm.create_model(**model_params(name, containers, mode))
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert error.value.response["Error"]["Message"] == message.format(name=name)


def test_create_model_refuses_sixteen_containers(sm: Any) -> None:
    with pytest.raises(sm.exceptions.ClientError) as error:
        sm.create_model(ModelName=unique("many"), Containers=[stage(f"h{i}") for i in range(16)])
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert error.value.response["Error"]["Message"].endswith(
        "at 'containers' failed to satisfy constraint: Member must have length less than or "
        "equal to 15"
    )


def running_stages(name: str) -> list[int]:
    """Pids of processes whose environment has ``STAGE=name``."""
    needle = f"STAGE={name}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                pids.append(int(environ.parent.name))
        except OSError:
            continue
    return pids


def test_a_container_that_cannot_start_fails_the_deployment(sm: Any) -> None:
    name = unique("broken")
    first = f"first-{name}"
    broken = {"Image": "process:python3 -c 'raise SystemExit(3)'", "ContainerHostname": "b2"}
    described = deploy_model(sm, name, [stage(first), broken])
    assert described["EndpointStatus"] == "Failed"
    assert (
        described["FailureReason"]
        == "Container b2 exited with status 3 before it passed the health check."
    )
    # The deployment stopped the container that did start.
    assert running_stages(first) == []
