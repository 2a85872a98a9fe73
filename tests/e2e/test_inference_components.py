"""Inference components through boto3 against a live server: the six operations, routing by
InferenceComponentName, and the errors of each (§7.5, §10.2)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from sagehost.testing.server import RunningServer
from tests.e2e.conftest import MODELS, unique
from tests.e2e.inference_component_helpers import (
    ACCOUNT,
    BEHAVE_URL,
    NEEDS,
    arn,
    component_endpoint,
    container_specification,
    create_component,
    create_container_component,
    error_of,
    eventually,
    hosting,
    invoke,
    model_endpoint,
    pid_of,
    settled,
)


def test_full_lifecycle(sm: Any, rt: Any) -> None:
    endpoint, model = hosting(sm, "icep")
    name = unique("ic")
    variant = sm.describe_endpoint(EndpointName=endpoint)["ProductionVariants"][0]
    assert variant == {
        "VariantName": "AllTraffic",
        "CurrentWeight": 1.0,
        "DesiredWeight": 1.0,
        "CurrentInstanceCount": 1,
        "DesiredInstanceCount": 1,
    }

    created = create_component(
        sm, name, endpoint, model, copies=2, Tags=[{"Key": "team", "Value": "ml"}]
    )
    assert created == arn("inference-component", name)
    described = settled(sm, name)
    described.pop("ResponseMetadata")
    modified = described.pop("LastModifiedTime")
    assert described.pop("CreationTime") <= modified
    assert described == {
        "InferenceComponentName": name,
        "InferenceComponentArn": created,
        "EndpointName": endpoint,
        "EndpointArn": arn("endpoint", endpoint),
        "VariantName": "AllTraffic",
        "InferenceComponentStatus": "InService",
        "Specification": {"ModelName": model, "ComputeResourceRequirements": NEEDS},
        "RuntimeConfig": {"DesiredCopyCount": 2, "CurrentCopyCount": 2},
    }

    reply = invoke(rt, endpoint, name, b"hello component")
    assert reply["Body"].read() == b"hello component"
    assert reply["InvokedProductionVariant"] == "AllTraffic"
    assert reply["ContentType"] == "text/plain"
    # The name is matched as AWS matches names: without regard to case.
    assert invoke(rt, endpoint, name.upper(), b"x")["Body"].read() == b"x"
    first_pids = {pid_of(rt, endpoint, name) for _ in range(30)}
    assert len(first_pids) == 2  # both copies take calls

    listed = sm.list_inference_components(EndpointNameEquals=endpoint)["InferenceComponents"]
    assert [
        {k: v for k, v in c.items() if k not in ("CreationTime", "LastModifiedTime")}
        for c in listed
    ] == [
        {
            "InferenceComponentArn": created,
            "InferenceComponentName": name,
            "EndpointArn": arn("endpoint", endpoint),
            "EndpointName": endpoint,
            "VariantName": "AllTraffic",
            "InferenceComponentStatus": "InService",
        }
    ]
    assert sm.list_tags(ResourceArn=created)["Tags"] == [{"Key": "team", "Value": "ml"}]
    sm.add_tags(ResourceArn=created, Tags=[{"Key": "stage", "Value": "dev"}])
    sm.delete_tags(ResourceArn=created, TagKeys=["team"])
    assert sm.list_tags(ResourceArn=created)["Tags"] == [{"Key": "stage", "Value": "dev"}]
    # Tagging the component touched no other record: the endpoint keeps its own tags.
    assert sm.list_tags(ResourceArn=arn("endpoint", endpoint))["Tags"] == []

    # A new specification: new copies start, the calls move to them, the old ones stop.
    sm.update_inference_component(
        InferenceComponentName=name,
        Specification=container_specification(BEHAVE_URL, {"LOAD_DELAY": "0"}),
        RuntimeConfig={"CopyCount": 1},
    )
    updated = settled(sm, name)
    assert updated["InferenceComponentStatus"] == "InService"
    assert updated["RuntimeConfig"] == {"DesiredCopyCount": 1, "CurrentCopyCount": 1}
    container = updated["Specification"]["Container"]
    assert container["ArtifactUrl"] == BEHAVE_URL
    assert container["Environment"] == {"LOAD_DELAY": "0"}
    assert container["DeployedImage"]["SpecifiedImage"] == "sagehost/python"
    assert "ModelName" not in updated["Specification"]
    assert updated["LastModifiedTime"] > modified
    new_pid = pid_of(rt, endpoint, name)
    assert new_pid not in first_pids

    sm.update_inference_component_runtime_config(
        InferenceComponentName=name, DesiredRuntimeConfig={"CopyCount": 3}
    )
    assert settled(sm, name)["RuntimeConfig"] == {"DesiredCopyCount": 3, "CurrentCopyCount": 3}
    pids = {pid_of(rt, endpoint, name) for _ in range(40)}
    assert len(pids) == 3 and new_pid in pids

    sm.delete_inference_component(InferenceComponentName=name)
    status, code, message = error_of(lambda: invoke(rt, endpoint, name))
    assert (status, code) == (400, "ValidationError")
    assert message == (
        f"Inference component {name} was not found for endpoint {endpoint} of account {ACCOUNT}."
    )
    eventually(lambda: not_found(sm, name))
    # With its components gone, the endpoint can be deleted.
    sm.delete_endpoint(EndpointName=endpoint)


def not_found(sm: Any, name: str) -> bool:
    """True once the component is gone; until then it must read Deleting."""
    try:
        described = sm.describe_inference_component(InferenceComponentName=name)
    except ClientError as error:
        status = error.response["ResponseMetadata"]["HTTPStatusCode"]
        code, message = error.response["Error"]["Code"], error.response["Error"]["Message"]
    else:
        assert described["InferenceComponentStatus"] == "Deleting"
        return False
    assert (status, code) == (400, "ValidationException")
    assert message == f'Could not find inference component "{arn("inference-component", name)}".'
    return True


def test_list_filters_sorting_and_pages(sm: Any) -> None:
    endpoint, model = hosting(sm, "iclist", variants=("Blue", "Green"))
    other = unique("iclist2")
    component_endpoint(sm, other)
    names = [unique("icl") for _ in range(3)]
    for index, name in enumerate(names):
        create_component(
            sm, name, endpoint, model, copies=0, variant="Green" if index == 2 else "Blue"
        )
    stranger = create_component(sm, unique("icl"), other, model, copies=0)

    def listed(**params: Any) -> list[str]:
        page = sm.list_inference_components(**params)
        return [c["InferenceComponentName"] for c in page["InferenceComponents"]]

    assert listed(EndpointNameEquals=endpoint, SortOrder="Ascending") == names
    assert listed(EndpointNameEquals=endpoint.upper()) == names[::-1]
    assert listed(EndpointNameEquals=endpoint, VariantNameEquals="Green") == [names[2]]
    assert listed(EndpointNameEquals=endpoint, StatusEquals="Failed") == []
    assert listed(NameContains=names[1], StatusEquals="InService") == [names[1]]
    assert listed(EndpointNameEquals=other) == [stranger.rsplit("/", 1)[1]]
    first = sm.list_inference_components(
        EndpointNameEquals=endpoint, SortBy="Name", SortOrder="Ascending", MaxResults=2
    )
    assert [c["InferenceComponentName"] for c in first["InferenceComponents"]] == sorted(names)[:2]
    rest = sm.list_inference_components(
        EndpointNameEquals=endpoint,
        SortBy="Name",
        SortOrder="Ascending",
        MaxResults=2,
        NextToken=first["NextToken"],
    )
    assert [c["InferenceComponentName"] for c in rest["InferenceComponents"]] == sorted(names)[2:]
    assert "NextToken" not in rest
    paginated = [
        c["InferenceComponentName"]
        for page in sm.get_paginator("list_inference_components").paginate(
            EndpointNameEquals=endpoint, PaginationConfig={"PageSize": 1}
        )
        for c in page["InferenceComponents"]
    ]
    assert paginated == names[::-1]


def test_control_plane_errors(server: RunningServer, sm: Any) -> None:
    endpoint, model = hosting(sm, "icerr", variants=("Blue", "Green"))
    name = unique("icerr")
    spec = {"ModelName": model, "ComputeResourceRequirements": NEEDS}

    def create(**params: Any) -> Any:
        merged = {
            "InferenceComponentName": name,
            "EndpointName": endpoint,
            "VariantName": "Blue",
            "Specification": spec,
            "RuntimeConfig": {"CopyCount": 0},
            **params,
        }
        return lambda: sm.create_inference_component(**merged)

    def rejected(call: Any) -> str:
        status, code, message = error_of(call)
        assert (status, code) == (400, "ValidationException")
        return message

    assert rejected(create(EndpointName="nope")) == (
        f'Could not find endpoint "{arn("endpoint", "nope")}".'
    )
    assert rejected(create(VariantName="Red")) == (
        f'The variant name Red is not present in the endpoint "{arn("endpoint", endpoint)}".'
    )

    def no_variant() -> Any:
        return sm.create_inference_component(
            InferenceComponentName=name,
            EndpointName=endpoint,
            Specification=spec,
            RuntimeConfig={"CopyCount": 0},
        )

    assert rejected(no_variant) == (
        f'Endpoint "{arn("endpoint", endpoint)}" has 2 production variants; '
        "name one with VariantName."
    )
    assert rejected(create(Specification={"ModelName": "missing"})) == (
        f'Could not find model "{arn("model", "missing")}".'
    )
    assert rejected(create(Specifications=[spec])) == (
        "Specify either Specification or Specifications, not both."
    )
    assert rejected(create(Specification={"ComputeResourceRequirements": NEEDS})) == (
        f"The specification of inference component {name} must name a ModelName "
        "or a Container with an Image."
    )
    needs = {"MinMemoryRequiredInMb": 512, "MaxMemoryRequiredInMb": 256}
    assert rejected(
        create(Specification={"ModelName": model, "ComputeResourceRequirements": needs})
    ) == ("MaxMemoryRequiredInMb (256) must not be less than MinMemoryRequiredInMb (512).")
    # The service model's own constraints are checked before the operation runs.
    unchecked = server.client("sagemaker", parameter_validation=False)
    negative = rejected(
        lambda: unchecked.create_inference_component(
            InferenceComponentName=name,
            EndpointName=endpoint,
            VariantName="Blue",
            Specification=spec,
            RuntimeConfig={"CopyCount": -1},
        )
    )
    assert negative == (
        "1 validation error detected: Value '-1' at 'runtimeConfig.copyCount' failed to "
        "satisfy constraint: Member must have value greater than or equal to 0"
    )

    # An endpoint whose variants run a model cannot host components.
    plain = unique("icplain")
    model_endpoint(sm, plain, model)
    assert rejected(create(EndpointName=plain, VariantName="AllTraffic")) == (
        f'Endpoint "{arn("endpoint", plain)}" serves models from its production variants and '
        "cannot host inference components; deploy it from an endpoint configuration whose "
        "variants name no ModelName."
    )
    # One endpoint config cannot mix the two kinds of variant.
    assert rejected(
        lambda: sm.create_endpoint_config(
            EndpointConfigName=unique("icmix"),
            ProductionVariants=[
                {"VariantName": "A", "ModelName": model, "InitialInstanceCount": 1},
                {"VariantName": "B", "InitialInstanceCount": 1},
            ],
        )
    ) == (
        "Either every production variant names a ModelName or none does "
        "(an endpoint that hosts inference components)."
    )

    create()()
    assert rejected(create()) == (
        f'Cannot create already existing inference component "{arn("inference-component", name)}".'
    )
    for call in (
        lambda: sm.describe_inference_component(InferenceComponentName="nope"),
        lambda: sm.delete_inference_component(InferenceComponentName="nope"),
        lambda: sm.update_inference_component_runtime_config(
            InferenceComponentName="nope", DesiredRuntimeConfig={"CopyCount": 1}
        ),
        lambda: sm.update_inference_component(
            InferenceComponentName="nope", RuntimeConfig={"CopyCount": 1}
        ),
    ):
        assert rejected(call) == (
            f'Could not find inference component "{arn("inference-component", "nope")}".'
        )
    assert rejected(lambda: sm.update_inference_component(InferenceComponentName=name)) == (
        "Give a Specification, Specifications or RuntimeConfig to update the inference "
        f'component "{arn("inference-component", name)}".'
    )
    # AWS refuses to delete an endpoint that still hosts components.
    assert rejected(lambda: sm.delete_endpoint(EndpointName=endpoint)) == (
        f'Cannot delete endpoint "{arn("endpoint", endpoint)}" while it hosts inference '
        f"components ({name}); delete them first."
    )
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"


def test_runtime_errors_and_a_component_still_creating(sm: Any, rt: Any) -> None:
    endpoint, model = hosting(sm, "icrt")
    slow = unique("icslow")

    status, code, message = error_of(lambda: rt.invoke_endpoint(EndpointName=endpoint, Body=b"x"))
    assert (status, code) == (400, "ValidationError")
    assert message == (
        f"Endpoint {endpoint} of account {ACCOUNT} hosts inference components; "
        "name one with InferenceComponentName."
    )
    status, code, message = error_of(lambda: invoke(rt, endpoint, "ghost"))
    assert (status, code) == (400, "ValidationError")
    assert message == (
        f"Inference component ghost was not found for endpoint {endpoint} of account {ACCOUNT}."
    )

    # A component whose copy takes a while to load: calls answer 429 until it is ready.
    create_container_component(sm, slow, endpoint, environment={"LOAD_DELAY": "2"})
    status, code, message = error_of(lambda: invoke(rt, endpoint, slow))
    assert (status, code) == (429, "ModelNotReadyException")
    assert message == (
        f"Inference component {slow} of endpoint {endpoint} has no copy ready yet "
        "(status Creating). Try again in a moment."
    )
    status, code, message = error_of(
        lambda: sm.update_inference_component_runtime_config(
            InferenceComponentName=slow, DesiredRuntimeConfig={"CopyCount": 2}
        )
    )
    assert (status, code) == (400, "ValidationException")
    assert message == (
        f'Cannot update in-progress inference component "{arn("inference-component", slow)}".'
    )
    assert settled(sm, slow)["InferenceComponentStatus"] == "InService"
    assert invoke(rt, endpoint, slow, b"ready")["Body"].read() == b"ready"

    # The header on an endpoint that serves its variants directly.
    plain = unique("icplainrt")
    model_endpoint(sm, plain, model)
    assert sm.describe_endpoint(EndpointName=plain)["EndpointStatus"] == "InService"
    status, code, message = error_of(lambda: invoke(rt, plain, slow))
    assert (status, code) == (400, "ValidationError")
    assert message == (
        f"Endpoint {plain} of account {ACCOUNT} hosts no inference components; "
        "remove InferenceComponentName."
    )
    assert json.loads(invoke_plain(rt, plain))["body"] == "plain"


def invoke_plain(rt: Any, endpoint: str) -> bytes:
    reply = rt.invoke_endpoint(
        EndpointName=endpoint,
        Body=b"plain",
        ContentType="text/plain",
        Accept="application/x-inspect",
    )
    body: bytes = reply["Body"].read()
    return body


def test_a_failing_component_is_failed_with_its_reason(sm: Any, rt: Any) -> None:
    endpoint, name = unique("icfail"), unique("icbroken")
    component_endpoint(sm, endpoint)
    create_container_component(sm, name, endpoint, "file:///nonexistent/model")
    described = settled(sm, name)
    assert described["InferenceComponentStatus"] == "Failed"
    assert described["FailureReason"] == (
        "Could not find model data at file:///nonexistent/model: no such file or directory."
    )
    assert described["RuntimeConfig"] == {"DesiredCopyCount": 1, "CurrentCopyCount": 0}
    status, code, _ = error_of(lambda: invoke(rt, endpoint, name))
    assert (status, code) == (400, "ValidationError")
    status, code, message = error_of(
        lambda: sm.update_inference_component_runtime_config(
            InferenceComponentName=name, DesiredRuntimeConfig={"CopyCount": 2}
        )
    )
    assert message == (
        f'Cannot update failed inference component "{arn("inference-component", name)}"; '
        "delete it and create it again."
    )
    sm.delete_inference_component(InferenceComponentName=name)
    eventually(lambda: not_found(sm, name))
    sm.delete_endpoint(EndpointName=endpoint)


def test_response_stream_routes_by_component(sm: Any, rt: Any) -> None:
    endpoint, name = unique("icstream"), unique("icstream")
    component_endpoint(sm, endpoint)
    create_container_component(sm, name, endpoint, (MODELS / "streamer").as_uri())
    assert settled(sm, name)["InferenceComponentStatus"] == "InService"
    response = rt.invoke_endpoint_with_response_stream(
        EndpointName=endpoint,
        InferenceComponentName=name,
        Body=json.dumps({"count": 3}),
        ContentType="application/json",
    )
    assert response["InvokedProductionVariant"] == "AllTraffic"
    parts = [event["PayloadPart"]["Bytes"] for event in response["Body"]]
    assert parts == [b"tok0 ", b"tok1 ", b"tok2 "]
    status, code, message = error_of(
        lambda: rt.invoke_endpoint_with_response_stream(EndpointName=endpoint, Body=b"{}")
    )
    assert (status, code) == (400, "ValidationError")
    assert message == (
        f"Endpoint {endpoint} of account {ACCOUNT} hosts inference components; "
        "name one with InferenceComponentName."
    )
