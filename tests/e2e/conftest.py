"""A real ``sagehost serve`` on a free loopback port, shared by the tests of a module."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sagehost.testing.server import RunningServer, free_port

MODELS = Path(__file__).resolve().parent.parent / "models"
CONTAINERS = Path(__file__).resolve().parent.parent / "containers"
_names = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}-{int(time.time() * 1000) % 100000}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(
        data_dir=tmp_path_factory.mktemp("sagehost") / "data",
        port=free_port(),
        args=["--startup-timeout", "5"],
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sm(server: RunningServer) -> Any:
    return server.client("sagemaker")


@pytest.fixture(scope="module")
def rt(server: RunningServer) -> Any:
    return server.client("sagemaker-runtime")


def create_model_and_config(
    sm: Any,
    name: str,
    *,
    image: str = "sagehost/python",
    model_dir: Path | None = MODELS / "behave",
    variants: list[dict[str, Any]] | None = None,
    environment: dict[str, str] | None = None,
    config_tags: list[dict[str, str]] | None = None,
) -> None:
    """CreateModel and CreateEndpointConfig, both called ``name``."""
    container: dict[str, Any] = {"Image": image}
    if model_dir is not None:
        container["ModelDataUrl"] = model_dir.as_uri()
    if environment:
        container["Environment"] = environment
    sm.create_model(ModelName=name, PrimaryContainer=container)
    config: dict[str, Any] = {
        "EndpointConfigName": name,
        "ProductionVariants": variants
        or [{"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}],
    }
    if config_tags:
        config["Tags"] = config_tags
    sm.create_endpoint_config(**config)


def deploy(
    sm: Any,
    name: str,
    *,
    image: str = "sagehost/python",
    model_dir: Path | None = MODELS / "behave",
    variants: list[dict[str, Any]] | None = None,
    environment: dict[str, str] | None = None,
    config_tags: list[dict[str, str]] | None = None,
    wait: bool = True,
) -> dict[str, Any]:
    """CreateModel, CreateEndpointConfig and CreateEndpoint; returns DescribeEndpoint."""
    create_model_and_config(
        sm,
        name,
        image=image,
        model_dir=model_dir,
        variants=variants,
        environment=environment,
        config_tags=config_tags,
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    description: dict[str, Any] = sm.describe_endpoint(EndpointName=name)
    if wait and description["EndpointStatus"] != "InService":
        raise AssertionError(f"endpoint {name} not InService: {description}")
    return description
