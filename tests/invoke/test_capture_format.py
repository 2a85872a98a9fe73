"""SageMaker data-capture records and object names: pure functions, exact values."""

from __future__ import annotations

import base64
import calendar
import json
from typing import Any

import pytest

from sagehost.invoke.capture_format import (
    CaptureSettings,
    capture_data,
    capture_record,
    encode_line,
    encoding_for,
    hour_prefix,
    object_url,
    parse_lines,
)

# 2024-05-01T12:34:56.789Z
WHEN = calendar.timegm((2024, 5, 1, 12, 34, 56)) + 0.789


def config(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": "s3://bucket/capture",
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {
            "CsvContentTypes": ["text/csv"],
            "JsonContentTypes": ["application/json", "Application/JSONLines"],
        },
    }
    base.update(overrides)
    return base


def settings(**overrides: Any) -> CaptureSettings:
    result = CaptureSettings.from_config(config(**overrides))
    assert result is not None
    return result


def test_settings_read_from_the_config() -> None:
    assert settings() == CaptureSettings(
        destination="s3://bucket/capture",
        sampling_percentage=100.0,
        capture_input=True,
        capture_output=True,
        csv_types=frozenset({"text/csv"}),
        json_types=frozenset({"application/json", "application/jsonlines"}),
    )
    only_input = settings(CaptureOptions=[{"CaptureMode": "Input"}])
    assert (only_input.capture_input, only_input.capture_output) == (True, False)
    both = settings(CaptureOptions=[{"CaptureMode": "InputAndOutput"}])
    assert (both.capture_input, both.capture_output) == (True, True)


@pytest.mark.parametrize(
    "overrides",
    [{"EnableCapture": False}, {"InitialSamplingPercentage": 0}, {"CaptureOptions": []}],
)
def test_configs_that_capture_nothing(overrides: dict[str, Any]) -> None:
    assert CaptureSettings.from_config(config(**overrides)) is None


def test_encoding_follows_the_content_type_header_lists() -> None:
    s = settings()
    assert encoding_for("text/csv", s) == "CSV"
    assert encoding_for("text/csv; charset=utf-8", s) == "CSV"
    assert encoding_for("APPLICATION/JSON", s) == "JSON"
    assert encoding_for("application/jsonlines", s) == "JSON"
    assert encoding_for("application/x-npy", s) == "BASE64"
    # Without a CaptureContentTypeHeader everything is base64.
    plain = settings(CaptureContentTypeHeader={})
    assert encoding_for("text/csv", plain) == "BASE64"


def test_capture_data_members() -> None:
    s = settings()
    assert capture_data(b"1,2,3", "text/csv", "INPUT", s) == {
        "observedContentType": "text/csv",
        "mode": "INPUT",
        "data": "1,2,3",
        "encoding": "CSV",
    }
    assert capture_data(b"\x00\xff", "application/x-npy", "OUTPUT", s) == {
        "observedContentType": "application/x-npy",
        "mode": "OUTPUT",
        "data": "AP8=",
        "encoding": "BASE64",
    }
    # A body sent without a Content-Type is recorded as octet-stream (and so base64).
    assert capture_data(b"hi", None, "INPUT", s) == {
        "observedContentType": "application/octet-stream",
        "mode": "INPUT",
        "data": "aGk=",
        "encoding": "BASE64",
    }
    # Text that is not UTF-8 cannot be CSV inside JSON: it falls back to base64, exactly.
    latin = "é".encode("latin-1")
    assert capture_data(latin, "text/csv", "INPUT", s) == {
        "observedContentType": "text/csv",
        "mode": "INPUT",
        "data": base64.b64encode(latin).decode(),
        "encoding": "BASE64",
    }


def test_a_whole_record_and_its_line() -> None:
    record = capture_record(
        settings=settings(),
        request_body=b'{"x": [1, 2]}',
        request_type="application/json",
        response_body=b"0.5",
        response_type="text/csv; charset=utf-8",
        event_id="7f0c8c9e-0000-4000-8000-000000000001",
        inference_time=WHEN,
        inference_id="inf-1",
    )
    assert record == {
        "captureData": {
            "endpointInput": {
                "observedContentType": "application/json",
                "mode": "INPUT",
                "data": '{"x": [1, 2]}',
                "encoding": "JSON",
            },
            "endpointOutput": {
                "observedContentType": "text/csv; charset=utf-8",
                "mode": "OUTPUT",
                "data": "0.5",
                "encoding": "CSV",
            },
        },
        "eventMetadata": {
            "eventId": "7f0c8c9e-0000-4000-8000-000000000001",
            "inferenceId": "inf-1",
            "inferenceTime": "2024-05-01T12:34:56Z",
        },
        "eventVersion": "0",
    }
    line = encode_line(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == record
    assert parse_lines(line + encode_line(record)) == [record, record]


def test_output_only_record_without_inference_id() -> None:
    record = capture_record(
        settings=settings(CaptureOptions=[{"CaptureMode": "Output"}]),
        request_body=b"in",
        request_type="text/plain",
        response_body=b"out",
        response_type="text/plain",
        event_id="e",
        inference_time=WHEN,
    )
    assert record == {
        "captureData": {
            "endpointOutput": {
                "observedContentType": "text/plain",
                "mode": "OUTPUT",
                "data": "b3V0",
                "encoding": "BASE64",
            }
        },
        "eventMetadata": {"eventId": "e", "inferenceTime": "2024-05-01T12:34:56Z"},
        "eventVersion": "0",
    }


def test_object_names() -> None:
    folder = hour_prefix("s3://bucket/capture/", "my-endpoint", "AllTraffic", WHEN)
    assert folder == "s3://bucket/capture/my-endpoint/AllTraffic/2024/05/01/12"
    assert object_url(folder, WHEN, "abc") == (
        "s3://bucket/capture/my-endpoint/AllTraffic/2024/05/01/12/34-56-789-abc.jsonl"
    )
    assert hour_prefix("file:///tmp/cap", "e", "v", WHEN) == "file:///tmp/cap/e/v/2024/05/01/12"
