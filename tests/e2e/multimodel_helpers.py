"""Helpers of the multi-model tests: model tarballs under a prefix, a multi-model endpoint on
the BYO test container (tests/containers/mme_server.py), and what its instances report."""

from __future__ import annotations

import io
import json
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from sagehost.testing.server import RunningServer
from tests.e2e.conftest import CONTAINERS, unique
from tests.e2e.signed import own_call

IMAGE = f"process:{sys.executable} {CONTAINERS / 'mme_server.py'}"


def model_tarball(
    ident: str, *, size: int = 0, load_delay: float | None = None, fail: str | None = None
) -> bytes:
    """A model as the test container reads it; ``size`` bytes of weights set its charge."""
    files = {"ident.txt": ident.encode()}
    if size:
        files["weights.bin"] = b"\0" * size
    if load_delay is not None:
        files["load_delay"] = str(load_delay).encode()
    if fail is not None:
        files["fail_load"] = fail.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def add_model(prefix: Path, target: str, ident: str | None = None, **options: Any) -> None:
    path = prefix / target
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model_tarball(ident or target, **options))


def deploy_mme(
    sm: Any,
    name: str,
    prefix: str,
    *,
    events: Path,
    instances: int = 1,
    environment: dict[str, str] | None = None,
    cache_setting: str | None = None,
    config_tags: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """CreateModel (Mode MultiModel), CreateEndpointConfig, CreateEndpoint; DescribeEndpoint."""
    container: dict[str, Any] = {
        "Image": IMAGE,
        "Mode": "MultiModel",
        "ModelDataUrl": prefix,
        "Environment": {"MME_EVENTS": str(events), **(environment or {})},
    }
    if cache_setting is not None:
        container["MultiModelConfig"] = {"ModelCacheSetting": cache_setting}
    return deploy_container(sm, name, container, instances=instances, config_tags=config_tags)


def mme_endpoint(
    sm: Any, tmp_path: Path, prefix: str, *targets: str, size: int = 0, **options: Any
) -> tuple[str, Path, Path]:
    """A multi-model endpoint named from ``prefix`` whose models live under the file:// URI of
    ``tmp_path/models``, with ``targets`` added there (each its own ident, ``size`` bytes of
    weights); ``options`` go to ``deploy_mme``. Returns (name, models folder, events log)."""
    models = tmp_path / "models"
    for target in targets:
        add_model(models, target, size=size)
    name, log = unique(prefix), tmp_path / "events"
    deploy_mme(sm, name, models.as_uri(), events=log, **options)
    return name, models, log


def deploy_container(
    sm: Any,
    name: str,
    container: dict[str, Any],
    *,
    instances: int = 1,
    config_tags: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """CreateModel with ``container``, CreateEndpointConfig, CreateEndpoint; DescribeEndpoint,
    which must say InService."""
    sm.create_model(ModelName=name, PrimaryContainer=container)
    config: dict[str, Any] = {
        "EndpointConfigName": name,
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": instances}
        ],
    }
    if config_tags:
        config["Tags"] = config_tags
    sm.create_endpoint_config(**config)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    described: dict[str, Any] = sm.describe_endpoint(EndpointName=name)
    assert described["EndpointStatus"] == "InService", described
    return described


def invoke(rt: Any, endpoint: str, target: str, body: bytes = b"hello") -> dict[str, Any]:
    reply = rt.invoke_endpoint(EndpointName=endpoint, TargetModel=target, Body=body)
    assert reply["InvokedProductionVariant"] == "AllTraffic"
    assert reply["ContentType"] == "application/json"
    answer: dict[str, Any] = json.loads(reply["Body"].read())
    return answer


def events(path: Path, kind: str) -> list[str]:
    """The idents of every ``load`` or ``unload`` the container instances recorded, in order."""
    if not path.exists():
        return []
    lines = [line.split(" ", 2) for line in path.read_text().splitlines()]
    return [ident for _, event, ident in lines if event == kind]


def wait_for(condition: Any, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll ``condition()`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(interval)


def loaded(server: RunningServer, endpoint: str, **credentials: str) -> dict[str, Any]:
    """``SageHost.ListLoadedModels`` of the endpoint's only variant."""
    status, answer = own_call(
        server, "SageHost.ListLoadedModels", {"EndpointName": endpoint}, **credentials
    )
    assert status == 200, answer
    assert answer["EndpointName"] == endpoint
    (variant,) = answer["Variants"]
    assert variant["VariantName"] == "AllTraffic"
    result: dict[str, Any] = variant
    return result


def loaded_targets(server: RunningServer, endpoint: str, **credentials: str) -> list[str]:
    """Every model loaded on the endpoint's instances, least recently used first per instance."""
    return [
        m["TargetModel"]
        for instance in loaded(server, endpoint, **credentials)["Instances"]
        for m in instance["Models"]
        if m["State"] == "Loaded"
    ]
