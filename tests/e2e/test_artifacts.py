"""Model data from S3 (moto on loopback, reached through AWS_ENDPOINT_URL_S3) and from a tarball."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sagehost.testing.moto import moto_client, moto_environment, running_moto
from sagehost.testing.server import RunningServer, free_port
from tests.e2e.conftest import MODELS, unique


def tarball(source: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(source.rglob("*")):
            if "__pycache__" not in path.parts:
                archive.add(path, arcname=str(path.relative_to(source)), recursive=False)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Any]]:
    with running_moto() as moto:
        env = moto_environment(moto, "S3")
        s3 = moto_client(moto)
        s3.create_bucket(Bucket="models")
        running = RunningServer(
            data_dir=tmp_path_factory.mktemp("s3") / "data", port=free_port(), env=env
        )
        running.start()
        yield running, s3
        running.stop()


def create(sm: Any, name: str, url: str) -> dict[str, Any]:
    sm.create_model(
        ModelName=name, PrimaryContainer={"Image": "sagehost/python", "ModelDataUrl": url}
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    described: dict[str, Any] = sm.describe_endpoint(EndpointName=name)
    return described


def test_model_tarball_from_s3(s3_server: tuple[RunningServer, Any]) -> None:
    server, s3 = s3_server
    s3.put_object(Bucket="models", Key="behave/model.tar.gz", Body=tarball(MODELS / "behave"))
    name = unique("s3")
    assert (
        create(server.client("sagemaker"), name, "s3://models/behave/model.tar.gz")[
            "EndpointStatus"
        ]
        == "InService"
    )
    reply = server.client("sagemaker-runtime").invoke_endpoint(EndpointName=name, Body=b"from s3")
    assert reply["Body"].read() == b"from s3"


def test_missing_s3_object_fails_with_the_url(s3_server: tuple[RunningServer, Any]) -> None:
    server, _ = s3_server
    described = create(
        server.client("sagemaker"), unique("nos3"), "s3://models/absent/model.tar.gz"
    )
    assert described["EndpointStatus"] == "Failed"
    assert "s3://models/absent/model.tar.gz" in described["FailureReason"]


def test_model_tarball_from_a_plain_path(
    s3_server: tuple[RunningServer, Any], tmp_path: Path
) -> None:
    server, _ = s3_server
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(tarball(MODELS / "behave"))
    name = unique("tgz")
    assert create(server.client("sagemaker"), name, str(archive))["EndpointStatus"] == "InService"
    reply = server.client("sagemaker-runtime").invoke_endpoint(EndpointName=name, Body=b"from disk")
    assert reply["Body"].read() == b"from disk"
