"""The deploy flow through boto3's sagemaker client against a live server."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError

from sagehost.testing.server import RunningServer
from tests.e2e.conftest import CONTAINERS, MODELS, create_model_and_config, deploy, unique

ACCOUNT = "000000000000"


def test_deploy_flow_is_in_service_on_first_describe(sm: Any) -> None:
    name = unique("flow")
    sm.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "sagehost/python", "ModelDataUrl": (MODELS / "behave").as_uri()},
        Tags=[{"Key": "team", "Value": "ml"}],
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 2}
        ],
    )
    created = sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    assert created["EndpointArn"] == f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/{name}"
    started = time.monotonic()
    first = sm.describe_endpoint(EndpointName=name)
    assert first["EndpointStatus"] == "InService"
    # The waiter polls first and sleeps 30 s only after a non-terminal answer.
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name)
    assert time.monotonic() - started < 25
    assert first["EndpointName"] == name
    assert first["EndpointConfigName"] == name
    variant = first["ProductionVariants"][0]
    assert variant["VariantName"] == "AllTraffic"
    assert variant["CurrentInstanceCount"] == 2
    assert variant["DesiredInstanceCount"] == 2
    assert variant["CurrentWeight"] == 1.0
    assert variant["DeployedImages"][0]["SpecifiedImage"] == "sagehost/python"
    assert first["CreationTime"] <= first["LastModifiedTime"]


def test_describe_model_and_config(sm: Any) -> None:
    name = unique("desc")
    deploy(sm, name)
    model = sm.describe_model(ModelName=name)
    assert model["ModelName"] == name
    assert model["ModelArn"] == f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/{name}"
    assert model["PrimaryContainer"]["Image"] == "sagehost/python"
    config = sm.describe_endpoint_config(EndpointConfigName=name)
    assert config["ProductionVariants"][0]["InitialVariantWeight"] == 1.0
    assert config["EndpointConfigArn"].endswith(f":endpoint-config/{name}")


def test_unknown_resources_answer_validation_exception_with_aws_text(sm: Any) -> None:
    with pytest.raises(ClientError) as error:
        sm.describe_endpoint(EndpointName="nope")
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert error.value.response["Error"]["Message"] == (
        f'Could not find endpoint "arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/nope".'
    )
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as error:
        sm.describe_endpoint_config(EndpointConfigName="nope")
    assert error.value.response["Error"]["Message"] == (
        f'Could not find endpoint configuration "arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint-config/nope".'
    )
    with pytest.raises(ClientError) as error:
        sm.create_endpoint_config(
            EndpointConfigName=unique("cfg"),
            ProductionVariants=[
                {"VariantName": "v", "ModelName": "Missing", "InitialInstanceCount": 1}
            ],
        )
    assert error.value.response["Error"]["Message"] == (
        f'Could not find model "arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/missing".'
    )


def test_duplicate_names_are_case_insensitive(sm: Any) -> None:
    name = unique("Dup")
    deploy(sm, name)
    with pytest.raises(ClientError) as error:
        sm.create_endpoint(EndpointName=name.upper(), EndpointConfigName=name)
    assert error.value.response["Error"]["Message"] == (
        f'Cannot create already existing endpoint "arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/{name.lower()}".'
    )
    with pytest.raises(ClientError) as error:
        sm.create_model(ModelName=name.lower(), PrimaryContainer={"Image": "sagehost/python"})
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "Cannot create already existing model" in error.value.response["Error"]["Message"]


def test_model_constraints_come_from_the_service_model(sm: Any) -> None:
    with pytest.raises(ClientError) as error:
        sm.create_model(ModelName="bad_name!", PrimaryContainer={"Image": "sagehost/python"})
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert error.value.response["Error"]["Message"].startswith(
        "1 validation error detected: Value 'bad_name!' at 'modelName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern"
    )
    with pytest.raises(ClientError) as error:
        sm.create_endpoint_config(
            EndpointConfigName="x" * 64,
            ProductionVariants=[
                {"VariantName": "bad_variant", "ModelName": "m", "InitialInstanceCount": 1}
            ],
        )
    message = error.value.response["Error"]["Message"]
    assert message.startswith("3 validation errors detected: ")
    assert "Member must have length less than or equal to 63" in message
    assert "at 'productionVariants.1.member.variantName' failed to satisfy constraint" in message


def test_list_pagination_and_filters(sm: Any) -> None:
    prefix = unique("page")
    for index in range(5):
        sm.create_model(
            ModelName=f"{prefix}-{index}", PrimaryContainer={"Image": "sagehost/python"}
        )
    paginator = sm.get_paginator("list_models")
    pages = list(
        paginator.paginate(
            NameContains=prefix,
            SortBy="Name",
            SortOrder="Ascending",
            PaginationConfig={"PageSize": 2},
        )
    )
    assert [len(p["Models"]) for p in pages] == [2, 2, 1]
    names = [m["ModelName"] for p in pages for m in p["Models"]]
    assert names == [f"{prefix}-{i}" for i in range(5)]
    newest_first = sm.list_models(NameContains=prefix)["Models"]
    assert [m["ModelName"] for m in newest_first] == [f"{prefix}-{i}" for i in reversed(range(5))]
    with pytest.raises(ClientError) as error:
        sm.list_models(NextToken="garbage!")
    assert error.value.response["Error"]["Code"] == "ValidationException"


def test_tags_round_trip(sm: Any) -> None:
    name = unique("tags")
    sm.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "sagehost/python"},
        Tags=[{"Key": "a", "Value": "1"}],
    )
    model_arn = sm.describe_model(ModelName=name)["ModelArn"]
    sm.add_tags(
        ResourceArn=model_arn, Tags=[{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "3"}]
    )
    assert sm.list_tags(ResourceArn=model_arn)["Tags"] == [
        {"Key": "a", "Value": "3"},
        {"Key": "b", "Value": "2"},
    ]
    sm.delete_tags(ResourceArn=model_arn, TagKeys=["a"])
    assert sm.list_tags(ResourceArn=model_arn)["Tags"] == [{"Key": "b", "Value": "2"}]
    other = model_arn.replace(ACCOUNT, "111122223333")
    with pytest.raises(ClientError) as error:
        sm.list_tags(ResourceArn=other)
    assert error.value.response["Error"]["Code"] == "ValidationException"


def test_delete_endpoint_and_waiter(sm: Any, rt: Any) -> None:
    name = unique("del")
    deploy(sm, name)
    sm.delete_endpoint(EndpointName=name)
    sm.get_waiter("endpoint_deleted").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )
    with pytest.raises(ClientError) as error:
        rt.invoke_endpoint(EndpointName=name, Body=b"x")
    assert error.value.response["Error"]["Code"] == "ValidationError"
    assert [e["EndpointName"] for e in sm.list_endpoints(NameContains=name)["Endpoints"]] == []
    # The config and model may still be deleted afterwards; deleting twice says not found.
    sm.delete_endpoint_config(EndpointConfigName=name)
    sm.delete_model(ModelName=name)
    with pytest.raises(ClientError):
        sm.delete_model(ModelName=name)


def test_model_that_fails_to_load_ends_failed_with_log_tail(sm: Any, rt: Any) -> None:
    name = unique("broken")
    description = deploy(sm, name, model_dir=MODELS / "broken", wait=False)
    assert description["EndpointStatus"] == "Failed"
    reason = description["FailureReason"]
    assert "weights file is corrupt: checksum mismatch" in reason
    assert len(reason) <= 1024
    with pytest.raises(WaiterError):
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name)
    with pytest.raises(ClientError) as error:
        rt.invoke_endpoint(EndpointName=name, Body=b"x")
    assert error.value.response["Error"]["Code"] == "ValidationError"
    assert "Failed" in error.value.response["Error"]["Message"]


def test_container_that_never_becomes_healthy_ends_failed(sm: Any) -> None:
    name = unique("unready")
    description = deploy(
        sm,
        name,
        image=f"process:python3 {CONTAINERS / 'never_ready.py'}",
        model_dir=None,
        wait=False,
    )
    assert description["EndpointStatus"] == "Failed"
    assert "/ping" in description["FailureReason"]
    assert "still warming up the cache" in description["FailureReason"]


def test_docker_image_without_engine_fails_with_reason(sm: Any) -> None:
    name = unique("docker")
    description = deploy(
        sm,
        name,
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/xgb:1",
        model_dir=None,
        wait=False,
    )
    assert description["EndpointStatus"] == "Failed"
    assert "Docker engine" in description["FailureReason"]


def test_update_endpoint_switches_config(sm: Any, rt: Any) -> None:
    name = unique("upd")
    deploy(sm, name)
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-v2",
        ProductionVariants=[{"VariantName": "Blue", "ModelName": name, "InitialInstanceCount": 1}],
    )
    sm.update_endpoint(EndpointName=name, EndpointConfigName=f"{name}-v2")
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name)
    described = sm.describe_endpoint(EndpointName=name)
    assert described["EndpointConfigName"] == f"{name}-v2"
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["Blue"]
    reply = rt.invoke_endpoint(EndpointName=name, Body=b"hi", ContentType="text/plain")
    assert reply["InvokedProductionVariant"] == "Blue"


def test_update_weights_and_capacities(sm: Any, rt: Any) -> None:
    name = unique("weights")
    deploy(
        sm,
        name,
        variants=[
            {
                "VariantName": "A",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InitialVariantWeight": 1,
            },
            {
                "VariantName": "B",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InitialVariantWeight": 0,
            },
        ],
    )
    sm.update_endpoint_weights_and_capacities(
        EndpointName=name,
        DesiredWeightsAndCapacities=[
            {"VariantName": "A", "DesiredWeight": 0},
            {"VariantName": "B", "DesiredWeight": 1, "DesiredInstanceCount": 2},
        ],
    )
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name)
    variants = {
        v["VariantName"]: v for v in sm.describe_endpoint(EndpointName=name)["ProductionVariants"]
    }
    assert variants["A"]["CurrentWeight"] == 0.0
    assert variants["B"]["CurrentWeight"] == 1.0
    assert variants["B"]["CurrentInstanceCount"] == 2
    seen = {
        rt.invoke_endpoint(EndpointName=name, Body=b"x")["InvokedProductionVariant"]
        for _ in range(20)
    }
    assert seen == {"B"}
    with pytest.raises(ClientError) as error:
        sm.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[{"VariantName": "C", "DesiredWeight": 1}],
        )
    assert error.value.response["Error"]["Code"] == "ValidationException"


def test_in_progress_endpoint_cannot_be_updated_or_deleted(sm: Any) -> None:
    name = unique("busy")
    create_model_and_config(sm, name, environment={"LOAD_DELAY": "3"})
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    listed = sm.list_endpoints(NameContains=name)["Endpoints"]
    assert [e["EndpointStatus"] for e in listed] == ["Creating"]
    expected = f'Cannot update in-progress endpoint "arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/{name}".'
    for call in (
        lambda: sm.update_endpoint(EndpointName=name, EndpointConfigName=name),
        lambda: sm.delete_endpoint(EndpointName=name),
    ):
        with pytest.raises(ClientError) as error:
            call()
        assert error.value.response["Error"]["Code"] == "ValidationException"
        assert error.value.response["Error"]["Message"] == expected
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"


def pids(rt: Any, name: str, variant: str, calls: int = 30) -> set[int]:
    """The worker processes that answered ``calls`` calls to ``variant``."""
    return {
        json.loads(
            rt.invoke_endpoint(
                EndpointName=name,
                TargetVariant=variant,
                Body=b"x",
                Accept="application/x-inspect",
            )["Body"].read()
        )["pid"]
        for _ in range(calls)
    }


def test_weights_and_capacities_change_in_place(sm: Any, rt: Any) -> None:
    name = unique("inplace")
    deploy(
        sm,
        name,
        variants=[
            {"VariantName": "A", "ModelName": name, "InitialInstanceCount": 1},
            {"VariantName": "B", "ModelName": name, "InitialInstanceCount": 1},
        ],
    )
    first_a, first_b = pids(rt, name, "A"), pids(rt, name, "B")
    assert len(first_a) == 1 and len(first_b) == 1
    sm.update_endpoint_weights_and_capacities(
        EndpointName=name,
        DesiredWeightsAndCapacities=[
            {"VariantName": "A", "DesiredWeight": 0},
            {"VariantName": "B", "DesiredInstanceCount": 2},
        ],
    )
    described = sm.describe_endpoint(EndpointName=name)
    assert described["EndpointStatus"] == "InService"
    variants = {v["VariantName"]: v for v in described["ProductionVariants"]}
    assert variants["A"]["CurrentWeight"] == 0.0
    assert variants["B"]["CurrentInstanceCount"] == 2
    # The same processes go on serving: nothing was redeployed, B only gained one.
    assert pids(rt, name, "A") == first_a
    grown = pids(rt, name, "B")
    assert len(grown) == 2 and first_b < grown
    sm.update_endpoint_weights_and_capacities(
        EndpointName=name,
        DesiredWeightsAndCapacities=[{"VariantName": "B", "DesiredInstanceCount": 1}],
    )
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
    assert len(pids(rt, name, "B")) == 1
    with pytest.raises(ClientError) as error:
        sm.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[{"VariantName": "A", "DesiredInstanceCount": 0}],
        )
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert error.value.response["Error"]["Message"] == (
        "Variant A cannot have 0 instances: only the variants of an endpoint for inference "
        "components scale to zero."
    )


def test_a_failed_update_of_a_failed_endpoint_leaves_it_failed(sm: Any) -> None:
    name = unique("refail")
    assert deploy(sm, name, model_dir=MODELS / "broken", wait=False)["EndpointStatus"] == "Failed"
    sm.update_endpoint_weights_and_capacities(
        EndpointName=name,
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredWeight": 2}],
    )
    described = sm.describe_endpoint(EndpointName=name)
    assert described["EndpointStatus"] == "Failed"
    assert "weights file is corrupt: checksum mismatch" in described["FailureReason"]


def test_look_alike_names_never_share_a_fleet(server: RunningServer, sm: Any) -> None:
    """Endpoint "<u>-g1-x" with variant "v", and endpoint "<u>" with variant "x-g1-v": names may
    hold "-", so fleet keys joined with it would be equal, and the fleets would share their
    model link and log directory."""
    base = unique("alike")
    deploy(
        sm,
        f"{base}-g1-x",
        variants=[{"VariantName": "v", "ModelName": f"{base}-g1-x", "InitialInstanceCount": 1}],
    )
    deploy(
        sm,
        base,
        model_dir=MODELS / "streamer",
        variants=[{"VariantName": "x-g1-v", "ModelName": base, "InitialInstanceCount": 1}],
    )
    fleets = sorted(p.name for p in (server.data_dir / "fleets").iterdir() if base in p.name)
    assert fleets == [f"000000000000.{base}-g1-x.g1.v", f"000000000000.{base}.g1.x-g1-v"]
    links = {(server.data_dir / "fleets" / f / "model").resolve() for f in fleets}
    assert len(links) == 2
