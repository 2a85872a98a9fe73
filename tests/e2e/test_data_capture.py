"""DataCaptureConfig: sampled requests and responses written as SageMaker data-capture JSON
Lines to file:// and to s3:// (moto on loopback). Real server, real workers, boto3."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagehost.invoke.capture_format import parse_lines
from sagehost.testing.moto import moto_client, moto_environment, running_moto
from sagehost.testing.server import RunningServer, free_port
from tests.e2e.conftest import MODELS, unique

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
OBJECT_NAME = re.compile(r"\d{2}-\d{2}-\d{3}-" + UUID.pattern + r"\.jsonl")


@pytest.fixture(scope="module")
def moto() -> Iterator[tuple[str, Any]]:
    with running_moto() as endpoint:
        s3 = moto_client(endpoint)
        s3.create_bucket(Bucket="capture")
        yield endpoint, s3


@pytest.fixture(scope="module")
def server(
    moto: tuple[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = RunningServer(
        data_dir=tmp_path_factory.mktemp("capture") / "data",
        port=free_port(),
        env=moto_environment(moto[0], "S3"),
    )
    running.start()
    yield running
    running.stop()


def deploy_capturing(
    server: RunningServer, name: str, capture: dict[str, Any], sm: Any = None
) -> None:
    """Deploy the behave model capturing as ``capture`` says, with ``sm`` (the dev account's
    client by default)."""
    sm = sm or server.client("sagemaker")
    sm.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "sagehost/python", "ModelDataUrl": (MODELS / "behave").as_uri()},
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}
        ],
        DataCaptureConfig=capture,
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    described = sm.describe_endpoint(EndpointName=name)
    assert described["EndpointStatus"] == "InService"
    enabled = capture.get("EnableCapture", True)
    assert described["DataCaptureConfig"] == {
        "EnableCapture": enabled,
        "CaptureStatus": "Started" if enabled else "Stopped",
        "CurrentSamplingPercentage": capture["InitialSamplingPercentage"],
        "DestinationS3Uri": capture["DestinationS3Uri"],
        "KmsKeyId": "",
    }


def wait_for_records(
    read: Callable[[], dict[str, bytes]], count: int, timeout: float = 15.0
) -> dict[str, list[dict[str, Any]]]:
    """Poll the capture objects (name -> bytes) until they hold ``count`` records."""
    deadline = time.monotonic() + timeout
    while True:
        objects = {key: parse_lines(data) for key, data in read().items()}
        total = sum(len(records) for records in objects.values())
        if total >= count:
            assert total == count, objects
            return objects
        if time.monotonic() > deadline:
            raise AssertionError(f"{total} of {count} capture records after {timeout} s")
        time.sleep(0.1)


def wait_deleted(sm: Any, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            sm.describe_endpoint(EndpointName=name)
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ValidationException"
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"endpoint {name} still there after {timeout} s")
        time.sleep(0.05)


def check_metadata(record: dict[str, Any], inference_id: str | None) -> datetime:
    metadata = record["eventMetadata"]
    assert UUID.fullmatch(metadata["eventId"]), metadata
    assert record["eventVersion"] == "0"
    expected = {"eventId", "inferenceTime"} | ({"inferenceId"} if inference_id else set())
    assert set(metadata) == expected
    if inference_id:
        assert metadata["inferenceId"] == inference_id
    when = datetime.strptime(metadata["inferenceTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - when).total_seconds()) < 120
    return when


def check_location(relative: str, name: str, when: datetime) -> None:
    """``<endpoint>/<variant>/yyyy/mm/dd/hh/<mm>-<ss>-<mmm>-<uuid>.jsonl``."""
    parts = relative.split("/")
    assert parts[:2] == [name, "AllTraffic"], relative
    assert parts[2:6] == when.strftime("%Y/%m/%d/%H").split("/"), relative
    assert OBJECT_NAME.fullmatch(parts[6]), relative
    assert len(parts) == 7


def test_capture_to_file_with_every_encoding(server: RunningServer, tmp_path: Path) -> None:
    name = unique("capfile")
    root = tmp_path / "captured"
    deploy_capturing(
        server,
        name,
        {
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": root.as_uri(),
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {
                "CsvContentTypes": ["text/csv"],
                "JsonContentTypes": ["application/json"],
            },
        },
    )
    rt = server.client("sagemaker-runtime")
    calls = [
        (b'{"rows": [[1, 2]]}', "application/json", "inf-json"),
        (b"1.5,2.5,3", "text/csv", None),
        (b"\x00\x01binary\xff", "application/x-npy", "inf-bin"),
    ]
    for body, content_type, inference_id in calls:
        extra = {"InferenceId": inference_id} if inference_id else {}
        reply = rt.invoke_endpoint(EndpointName=name, Body=body, ContentType=content_type, **extra)
        assert reply["Body"].read() == body

    def read() -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in root.rglob("*.jsonl")
            if not p.name.startswith(".")
        }

    objects = wait_for_records(read, len(calls))
    records = [r for batch in objects.values() for r in batch]
    records.sort(key=lambda r: [c[0] for c in calls].index(_input_bytes(r)))
    expected_data = [
        ('{"rows": [[1, 2]]}', "JSON"),
        ("1.5,2.5,3", "CSV"),
        (base64.b64encode(b"\x00\x01binary\xff").decode(), "BASE64"),
    ]
    for record, (_, content_type, inference_id), (data, encoding) in zip(
        records, calls, expected_data, strict=True
    ):
        assert record["captureData"] == {
            # behave echoes the body with the request's content type
            "endpointInput": {
                "observedContentType": content_type,
                "mode": "INPUT",
                "data": data,
                "encoding": encoding,
            },
            "endpointOutput": {
                "observedContentType": content_type,
                "mode": "OUTPUT",
                "data": data,
                "encoding": encoding,
            },
        }
        when = check_metadata(record, inference_id)
        owner = next(key for key, batch in objects.items() if record in batch)
        check_location(owner, name, when)
    server.client("sagemaker").delete_endpoint(EndpointName=name)


def test_capture_to_s3_input_only_written_out_on_delete(
    server: RunningServer, moto: tuple[str, Any]
) -> None:
    s3 = moto[1]
    name = unique("caps3")
    deploy_capturing(
        server,
        name,
        {
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": "s3://capture/data-capture/",
            "CaptureOptions": [{"CaptureMode": "Input"}],
        },
    )
    rt = server.client("sagemaker-runtime")
    bodies = [f"row-{i}".encode() for i in range(5)]
    for body in bodies:
        rt.invoke_endpoint(EndpointName=name, Body=body, ContentType="text/plain")
    # Deleting the endpoint writes out what is still buffered, before the delete ends.
    sm = server.client("sagemaker")
    sm.delete_endpoint(EndpointName=name)
    wait_deleted(sm, name)
    prefix = f"data-capture/{name}/"

    def read() -> dict[str, bytes]:
        listed = s3.list_objects_v2(Bucket="capture", Prefix=prefix).get("Contents", [])
        return {
            o["Key"][len("data-capture/") :]: s3.get_object(Bucket="capture", Key=o["Key"])[
                "Body"
            ].read()
            for o in listed
        }

    objects = wait_for_records(read, len(bodies), timeout=0)
    records = [r for batch in objects.values() for r in batch]
    assert sorted(_input_bytes(r) for r in records) == sorted(bodies)
    for key, batch in objects.items():
        for record in batch:
            # Input only, and without a CaptureContentTypeHeader everything is base64.
            assert record["captureData"] == {
                "endpointInput": {
                    "observedContentType": "text/plain",
                    "mode": "INPUT",
                    "data": base64.b64encode(_input_bytes(record)).decode(),
                    "encoding": "BASE64",
                }
            }
            check_location(key, name, check_metadata(record, None))
        head = s3.head_object(Bucket="capture", Key=f"data-capture/{key}")
        assert head["ContentType"] == "application/jsonl"


def test_sampling_and_disabled_capture(server: RunningServer, tmp_path: Path) -> None:
    sampled, disabled = unique("capsample"), unique("capoff")
    root = tmp_path / "sampled"
    off_root = tmp_path / "disabled"
    common = {"CaptureOptions": [{"CaptureMode": "InputAndOutput"}]}
    deploy_capturing(
        server,
        sampled,
        {"InitialSamplingPercentage": 50, "DestinationS3Uri": root.as_uri(), **common},
    )
    deploy_capturing(
        server,
        disabled,
        {
            "EnableCapture": False,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": off_root.as_uri(),
            **common,
        },
    )
    rt = server.client("sagemaker-runtime")
    calls = 60
    for i in range(calls):
        for endpoint in (sampled, disabled):
            rt.invoke_endpoint(
                EndpointName=endpoint, Body=f"{i}".encode(), ContentType="text/plain"
            )
    sm = server.client("sagemaker")
    for endpoint in (sampled, disabled):
        sm.delete_endpoint(EndpointName=endpoint)
        wait_deleted(sm, endpoint)  # a delete writes out the captures before it ends
    captured = sum(len(parse_lines(p.read_bytes())) for p in root.rglob("*.jsonl"))
    # 60 draws at 50 %: outside 12..48 has a probability below 1e-5.
    assert 12 <= captured <= 48, captured
    assert not off_root.exists()


def _input_bytes(record: dict[str, Any]) -> bytes:
    data = record["captureData"]["endpointInput"]
    if data["encoding"] == "BASE64":
        return base64.b64decode(data["data"])
    return str(data["data"]).encode()


def test_a_destination_sagehost_cannot_write_is_refused(server: RunningServer) -> None:
    name = unique("capbad")
    sm = server.client("sagemaker")
    sm.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "sagehost/python", "ModelDataUrl": (MODELS / "behave").as_uri()},
    )
    with pytest.raises(ClientError) as error:
        sm.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}
            ],
            DataCaptureConfig={
                "InitialSamplingPercentage": 100,
                "DestinationS3Uri": "https://bucket.example/capture",
                "CaptureOptions": [{"CaptureMode": "Input"}],
            },
        )
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error.value.response["Error"] == {
        "Code": "ValidationException",
        "Message": "DataCaptureConfig.DestinationS3Uri https://bucket.example/capture is not "
        "supported: use an s3:// or file:// location.",
    }
    with pytest.raises(ClientError) as missing:
        sm.describe_endpoint_config(EndpointConfigName=name)
    assert missing.value.response["Error"]["Code"] == "ValidationException"
