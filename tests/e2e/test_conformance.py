"""Every header, status and error shape the server emits is one botocore's service models define.

The responses are captured raw (before botocore parses them) from real calls that exercise the
success path and each error path of the operations sagehost serves.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import botocore.session
import pytest
from botocore.model import OperationModel, StructureShape

from sagehost.testing.server import RunningServer
from tests.e2e.conftest import deploy, unique

# Errors common to every AWS JSON service, not listed per operation in the models.
COMMON_CODES = {
    "MissingAuthenticationTokenException": 403,
    "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403,
    "IncompleteSignatureException": 400,
    "ValidationException": 400,
    "SerializationException": 400,
}
# Transport headers any HTTP response may carry.
TRANSPORT = {
    "content-length",
    "date",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "x-amzn-requestid",
}


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[OperationModel, dict[str, Any]]] = []

    def __call__(
        self, operation_model: OperationModel, response_dict: dict[str, Any], **_: Any
    ) -> None:
        self.seen.append((operation_model, response_dict))


@pytest.fixture(scope="module")
def captured(server: RunningServer) -> Recorder:
    recorder = Recorder()
    sm = server.client("sagemaker")
    rt = server.client("sagemaker-runtime")
    for client in (sm, rt):
        client.meta.events.register("before-parse", recorder)
    name = unique("conf")
    deploy(
        sm,
        name,
        variants=[{"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}],
    )
    calls = [
        lambda: rt.invoke_endpoint(
            EndpointName=name, Body=b"x", ContentType="text/plain", CustomAttributes="a=1"
        ),
        lambda: rt.invoke_endpoint(EndpointName="missing", Body=b"x"),
        lambda: rt.invoke_endpoint(EndpointName=name, Body=b"x", TargetVariant="bad_name"),
        lambda: rt.invoke_endpoint(EndpointName=name, Body=b"status:418", ContentType="text/plain"),
        lambda: rt.invoke_endpoint(EndpointName=name, Body=b"raise:boom", ContentType="text/plain"),
        lambda: rt.invoke_endpoint(EndpointName=name, Body=b"x" * (6 * 1024 * 1024 + 1)),
        lambda: sm.describe_endpoint(EndpointName=name),
        lambda: sm.describe_endpoint_config(EndpointConfigName=name),
        lambda: sm.describe_model(ModelName=name),
        lambda: sm.list_endpoints(),
        lambda: sm.list_endpoint_configs(),
        lambda: sm.list_models(MaxResults=1),
        lambda: sm.list_tags(ResourceArn=sm.describe_model(ModelName=name)["ModelArn"]),
        lambda: sm.add_tags(
            ResourceArn=sm.describe_model(ModelName=name)["ModelArn"],
            Tags=[{"Key": "k", "Value": "v"}],
        ),
        lambda: sm.delete_tags(
            ResourceArn=sm.describe_model(ModelName=name)["ModelArn"], TagKeys=["k"]
        ),
        lambda: sm.describe_endpoint(EndpointName="missing"),
        lambda: sm.create_model(
            ModelName="bad_name", PrimaryContainer={"Image": "sagehost/python"}
        ),
        lambda: sm.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredWeight": 2}],
        ),
        lambda: sm.update_endpoint(EndpointName=name, EndpointConfigName=name),
        lambda: sm.delete_endpoint(EndpointName=name),
        lambda: sm.delete_endpoint_config(EndpointConfigName=name),
        lambda: sm.delete_model(ModelName=name),
    ]
    for call in calls:
        with contextlib.suppress(Exception):  # each outcome is judged from the raw response
            call()
    return recorder


def test_every_response_matches_the_service_model(captured: Recorder) -> None:
    operations = {op.name for op, _ in captured.seen}
    assert {
        "InvokeEndpoint",
        "DescribeEndpoint",
        "ListModels",
        "AddTags",
        "DeleteEndpoint",
    } <= operations
    statuses = {response["status_code"] for _, response in captured.seen}
    assert {200, 400, 424} <= statuses
    for op, response in captured.seen:
        headers = {k.lower(): v for k, v in response["headers"].items()}
        assert len(headers["x-amzn-requestid"]) == 36
        assert "date" in headers
        raw = response["body"]
        # A successful InvokeEndpoint's body is the model's payload, streamed to botocore.
        body = json.loads(raw) if isinstance(raw, bytes) and raw else {}
        if response["status_code"] < 300:
            check_success(op, headers, body)
        else:
            check_error(op, response["status_code"], headers, body)


def check_success(op: OperationModel, headers: dict[str, str], body: Any) -> None:
    assert int(op.http.get("responseCode", 200)) == 200
    output = op.output_shape
    allowed = set(TRANSPORT)
    if output is not None:
        assert isinstance(output, StructureShape)
        for member in output.members.values():
            if member.serialization.get("location") == "header":
                allowed.add(member.serialization["name"].lower())
    if op.metadata["protocol"] == "rest-json":
        allowed.add("content-type")  # the ContentType member travels as Content-Type
        assert set(headers) <= allowed, (op.name, set(headers) - allowed)
        return
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert set(headers) - {"content-type"} <= allowed, (op.name, set(headers) - allowed)
    assert isinstance(body, dict)
    members = set(output.members) if output is not None else set()  # type: ignore[union-attr]
    assert set(body) <= members, (op.name, set(body) - members)
    for name in output.required_members if output is not None else []:  # type: ignore[union-attr]
        assert name in body, (op.name, name)


def check_error(
    op: OperationModel, status: int, headers: dict[str, str], body: dict[str, Any]
) -> None:
    modeled = {shape.name: shape for shape in op.error_shapes}
    if op.metadata["protocol"] == "rest-json":
        code = headers["x-amzn-errortype"].split(":")[0]
    else:
        code = body["__type"].split("#")[-1]
    assert code in modeled or code in COMMON_CODES, (op.name, code)
    shape = modeled.get(code)
    expected = (
        shape.metadata["error"]["httpStatusCode"] if shape is not None else COMMON_CODES[code]
    )
    assert status == expected, (op.name, code, status)
    assert body["Message"]
    assert headers["content-type"].startswith("application/")
    if shape is not None:
        # Modeled members are read from the body under their exact names, with their types.
        extra = set(body) - set(shape.members) - {"message", "ErrorCode", "__type"}
        assert extra == set(), (op.name, code, extra)
        for name, value in body.items():
            member = shape.members.get(name)
            if member is not None and member.type_name in ("integer", "long"):
                assert isinstance(value, int), (name, value)


def test_runtime_errors_carry_error_codes(server: RunningServer) -> None:
    recorder = Recorder()
    rt = server.client("sagemaker-runtime")
    rt.meta.events.register("before-parse", recorder)
    with pytest.raises(rt.exceptions.ValidationError):
        rt.invoke_endpoint(EndpointName="nowhere", Body=b"x")
    body = json.loads(recorder.seen[-1][1]["body"])
    assert body == {
        "ErrorCode": "NO_SUCH_ENDPOINT",
        "Message": "Endpoint nowhere of account 000000000000 not found.",
        "message": "Endpoint nowhere of account 000000000000 not found.",
    }


def test_models_define_every_operation_served() -> None:
    session = botocore.session.get_session()
    control = session.get_service_model("sagemaker")
    served = {
        "CreateModel",
        "DescribeModel",
        "ListModels",
        "DeleteModel",
        "CreateEndpointConfig",
        "DescribeEndpointConfig",
        "ListEndpointConfigs",
        "DeleteEndpointConfig",
        "CreateEndpoint",
        "DescribeEndpoint",
        "ListEndpoints",
        "DeleteEndpoint",
        "UpdateEndpoint",
        "UpdateEndpointWeightsAndCapacities",
        "AddTags",
        "ListTags",
        "DeleteTags",
    }
    assert served <= set(control.operation_names)
