"""What an inference component runs and where it is hosted, decided from its request fields
and the catalog's records, without any process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sagehost.control.component_specs import (
    describe_record,
    first_spec,
    host_variant,
    hosts_components,
    runnable_model,
    specifications,
)
from sagehost.control.context import Store
from sagehost.core.errors import InvalidRequest, ResourceNotFound
from sagehost.core.invocation import Caller
from sagehost.core.resources import Kind
from sagehost.storage.catalog import SqliteCatalog
from sagehost.testing.fakes import FakeClock

CALLER = Caller("123456789012", "eu-west-1")
ENDPOINT_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/ep"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    catalog = SqliteCatalog(tmp_path / "catalog.sqlite3")
    yield Store(catalog, FakeClock())
    catalog.close()


def endpoint(*variants: dict[str, Any], status: str = "InService") -> dict[str, Any]:
    return {
        "EndpointName": "ep",
        "EndpointArn": ENDPOINT_ARN,
        "EndpointStatus": status,
        "_config": {"ProductionVariants": list(variants)},
    }


def test_inline_container_fields_go_over_the_named_models_own(store: Store) -> None:
    store.create(
        CALLER,
        Kind.MODEL,
        "Base",
        {
            "ModelName": "Base",
            "PrimaryContainer": {
                "Image": "sagehost/python",
                "ModelDataSource": {"S3DataSource": {"S3Uri": "s3://bucket/old/"}},
                "Environment": {"A": "model", "B": "model"},
                "ContainerHostname": "main",
            },
        },
    )
    spec = {
        "ModelName": "Base",
        "Container": {"ArtifactUrl": "s3://bucket/new.tar.gz", "Environment": {"B": "component"}},
    }
    assert runnable_model(store, CALLER, "ic", spec) == {
        "ModelName": "Base",
        "PrimaryContainer": {
            "Image": "sagehost/python",
            "ModelDataUrl": "s3://bucket/new.tar.gz",
            "Environment": {"A": "model", "B": "component"},
            "ContainerHostname": "main",
        },
    }
    inline = {"Container": {"Image": "process:python serve.py"}}
    assert runnable_model(store, CALLER, "ic", inline) == {
        "ModelName": "ic",
        "PrimaryContainer": {"Image": "process:python serve.py"},
    }


def test_models_an_inference_component_cannot_run(store: Store) -> None:
    store.create(
        CALLER,
        Kind.MODEL,
        "Pipeline",
        {"ModelName": "Pipeline", "Containers": [{"Image": "a"}, {"Image": "b"}]},
    )
    store.create(
        CALLER,
        Kind.MODEL,
        "Many",
        {"ModelName": "Many", "PrimaryContainer": {"Image": "a", "Mode": "MultiModel"}},
    )
    with pytest.raises(InvalidRequest) as error:
        runnable_model(store, CALLER, "ic", {"ModelName": "Pipeline"})
    assert error.value.message == (
        "Model Pipeline has 2 containers; an inference component runs a model with one container."
    )
    with pytest.raises(InvalidRequest) as error:
        runnable_model(store, CALLER, "ic", {"ModelName": "Many"})
    assert error.value.message == (
        "Model Many is a multi-model container; an inference component runs a single model."
    )


def test_an_adapter_runs_nothing_but_its_base_must_exist(store: Store) -> None:
    adapter = {"BaseInferenceComponentName": "base", "Container": {"ArtifactUrl": "s3://b/a"}}
    with pytest.raises(ResourceNotFound) as error:
        runnable_model(store, CALLER, "adapter", adapter)
    assert error.value.message == (
        'Could not find inference component "arn:aws:sagemaker:eu-west-1:123456789012:'
        'inference-component/base".'
    )
    store.create(CALLER, Kind.INFERENCE_COMPONENT, "base", {"InferenceComponentName": "base"})
    assert runnable_model(store, CALLER, "adapter", adapter) is None


def test_host_variant_choices() -> None:
    blue, green = {"VariantName": "Blue"}, {"VariantName": "Green"}
    assert host_variant(endpoint(blue), None) is blue
    assert host_variant(endpoint(blue, green), "Green") is green
    assert hosts_components({"ProductionVariants": [blue, green]})
    assert not hosts_components({"ProductionVariants": [{"VariantName": "v", "ModelName": "m"}]})
    with pytest.raises(InvalidRequest) as error:
        host_variant(endpoint(blue, status="Deleting"), None)
    assert error.value.message == (
        f'Cannot create an inference component on endpoint "{ENDPOINT_ARN}" while its status '
        "is Deleting."
    )


def test_specifications_and_the_one_that_runs() -> None:
    one = {"ModelName": "m"}
    per_type = [{"ModelName": "a", "InstanceType": "ml.g5.xlarge"}, {"ModelName": "b"}]
    assert specifications({"Specification": one}) == [one]
    assert specifications({"Specifications": per_type}) == per_type
    assert specifications({}) is None
    assert first_spec({"Specifications": per_type}) == per_type[0]
    with pytest.raises(InvalidRequest) as error:
        specifications({"Specifications": [one] * 6})
    assert error.value.message == "Specifications must hold between 1 and 5 specifications."


def test_describe_shows_the_pending_copy_count_and_the_deployed_image() -> None:
    record = {
        "InferenceComponentName": "ic",
        "InferenceComponentArn": "arn:ic",
        "EndpointName": "ep",
        "EndpointArn": ENDPOINT_ARN,
        "VariantName": "AllTraffic",
        "InferenceComponentStatus": "Updating",
        "CreationTime": 10.0,
        "LastModifiedTime": 12.0,
        "Specification": {"Container": {"Image": "img", "Environment": {"K": "v"}}},
        "RuntimeConfig": {"CopyCount": 1},
        "Tags": [{"Key": "k", "Value": "v"}],
        "_pending": {"CopyCount": 4},
        "_model": {},
        "_deployed_at": 11.0,
    }
    assert describe_record(record, ready=2) == {
        "InferenceComponentName": "ic",
        "InferenceComponentArn": "arn:ic",
        "EndpointName": "ep",
        "EndpointArn": ENDPOINT_ARN,
        "VariantName": "AllTraffic",
        "InferenceComponentStatus": "Updating",
        "CreationTime": 10.0,
        "LastModifiedTime": 12.0,
        "Specification": {
            "Container": {
                "Environment": {"K": "v"},
                "DeployedImage": {
                    "SpecifiedImage": "img",
                    "ResolvedImage": "img",
                    "ResolutionTime": 11.0,
                },
            }
        },
        "RuntimeConfig": {"DesiredCopyCount": 4, "CurrentCopyCount": 2},
    }
