"""Deploying a multi-model container: the fleet's container, the host's spec, budget tags."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sagehost.control.deployer import Deployer, DeploySettings, container_spec
from sagehost.control.endpoint_configs import multi_model_budgets
from sagehost.control.multi_model import multi_model_container, multi_model_spec
from sagehost.core.errors import DeploymentFailed, InvalidRequest
from sagehost.core.multimodel import MIB, MultiModelSpec
from sagehost.core.ports import ContainerRequest, ContainerResponse, Fleet, FleetSpec
from tests.invoke.test_multimodel_host import FakeFleet

MODEL: dict[str, Any] = {
    "ModelName": "mme",
    "PrimaryContainer": {
        "Image": "sagehost/python",
        "Mode": "MultiModel",
        "ModelDataUrl": "s3://bucket/models/",
        "Environment": {"A": "1"},
        "MultiModelConfig": {"ModelCacheSetting": "Disabled"},
    },
}
VARIANT = {"VariantName": "AllTraffic", "ModelName": "mme", "InitialInstanceCount": 2}


def test_the_fleet_starts_with_no_model_and_knows_it_serves_several() -> None:
    defined = container_spec(MODEL, MODEL["PrimaryContainer"])
    fleet_container = multi_model_container(MODEL, defined)
    assert fleet_container.model_data_url is None
    assert fleet_container.environment == {"A": "1", "SAGEMAKER_MULTI_MODEL": "true"}
    assert fleet_container.image == "sagehost/python"


def test_a_multi_model_container_needs_a_prefix() -> None:
    container = {"Image": "sagehost/python", "Mode": "MultiModel"}
    with pytest.raises(DeploymentFailed) as error:
        multi_model_container(MODEL, container_spec(MODEL, container))
    assert error.value.message == (
        "Model mme is a multi-model container and names no ModelDataUrl: set it to the prefix "
        "(s3://, file:// or a directory) the TargetModels are below."
    )


def test_the_spec_takes_the_defaults_unless_the_config_tags_override_them() -> None:
    container = MODEL["PrimaryContainer"]
    defined = container_spec(MODEL, container)
    spec = multi_model_spec("k", container, defined, memory_mb=2, disk_mb=8)
    assert spec == MultiModelSpec(
        key="k",
        prefix="s3://bucket/models/",
        container="primary",
        memory_budget=2 * MIB,
        disk_budget=8 * MIB,
        cache_models=False,
    )
    tags = [
        {"Key": "sagehost:mme-memory-mb", "Value": "0.5"},
        {"Key": "sagehost:mme-disk-mb", "Value": "100"},
    ]
    spec = multi_model_spec("k", {}, defined, memory_mb=2, disk_mb=8, tags=tags)
    assert (spec.memory_budget, spec.disk_budget, spec.cache_models) == (MIB // 2, 100 * MIB, True)


def test_an_s3_data_source_is_a_prefix_too() -> None:
    container = {
        "Image": "sagehost/python",
        "Mode": "MultiModel",
        "ModelDataSource": {
            "S3DataSource": {
                "S3Uri": "s3://bucket/p/",
                "S3DataType": "S3Prefix",
                "CompressionType": "Gzip",
            }
        },
    }
    defined = container_spec(MODEL, container)
    assert multi_model_spec("k", container, defined, memory_mb=1, disk_mb=1).prefix == (
        "s3://bucket/p/"
    )


@pytest.mark.parametrize("value", ["0", "-1", "abc", "", "nan", "inf"])
def test_budget_tags_must_be_positive_numbers(value: str) -> None:
    with pytest.raises(InvalidRequest) as error:
        multi_model_budgets([{"Key": "sagehost:mme-disk-mb", "Value": value}])
    assert error.value.message == "Tag sagehost:mme-disk-mb must be a number of MiB above 0."


def test_budget_tags_absent() -> None:
    assert multi_model_budgets([{"Key": "other", "Value": "x"}]) == (None, None)


class RecordingPool:
    def __init__(self) -> None:
        self.specs: list[FleetSpec] = []

    async def launch(self, spec: FleetSpec) -> Fleet:
        self.specs.append(spec)
        return FakeFleet([])

    async def shutdown(self) -> None:
        pass


class Host:
    def __init__(self, spec: MultiModelSpec, fleet: Fleet) -> None:
        self.spec, self.fleet = spec, fleet

    async def invoke(self, target_model: str, request: ContainerRequest) -> ContainerResponse:
        raise NotImplementedError

    async def close(self) -> None:
        pass


def test_the_deployer_gives_the_variant_its_model_host() -> None:
    pool = RecordingPool()
    settings = DeploySettings(mme_memory_mb=3, mme_disk_mb=4, model_hosts=Host)
    variant = asyncio.run(Deployer(pool, settings).launch("fleet-key", VARIANT, MODEL))
    (spec,) = pool.specs
    assert (spec.key, spec.instance_count, spec.container.model_data_url) == ("fleet-key", 2, None)
    assert spec.container.environment["SAGEMAKER_MULTI_MODEL"] == "true"
    assert isinstance(variant.models, Host)
    assert variant.models.fleet is variant.fleet
    assert variant.models.spec.prefix == "s3://bucket/models/"
    assert (variant.models.spec.memory_budget, variant.models.spec.disk_budget) == (
        3 * MIB,
        4 * MIB,
    )


def test_without_a_model_host_factory_the_deployment_fails() -> None:
    pool = RecordingPool()
    with pytest.raises(DeploymentFailed) as error:
        asyncio.run(Deployer(pool, DeploySettings()).launch("k", VARIANT, MODEL))
    assert error.value.message == (
        "Model mme is a multi-model container, and this server was built without "
        "multi-model support."
    )
    assert pool.specs == []
