"""SageMaker data-capture records and where they go: pure functions, no I/O and no clock.

One JSON object per line (JSON Lines), as Model Monitor reads them::

    {"captureData": {"endpointInput":  {"observedContentType": "text/csv", "mode": "INPUT",
                                        "data": "1,2,3", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "application/json",
                                        "mode": "OUTPUT", "data": "{...}", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "<uuid>", "inferenceId": "<InferenceId, when sent>",
                       "inferenceTime": "2024-05-01T12:34:56Z"},
     "eventVersion": "0"}

Objects are named ``<DestinationS3Uri>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm>-<ss>-<mmm>-<id>.jsonl``
after the UTC time of the batch's first record.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sagehost.core.locations import join_location

CSV = "CSV"
JSON = "JSON"
BASE64 = "BASE64"
EVENT_VERSION = "0"
# sagehost: what a body without a Content-Type is recorded as (botocore sends none by default).
DEFAULT_CONTENT_TYPE = "application/octet-stream"
INPUT_MODES = frozenset({"Input", "InputAndOutput"})
OUTPUT_MODES = frozenset({"Output", "InputAndOutput"})


@dataclass(frozen=True)
class CaptureSettings:
    """What a ``DataCaptureConfig`` asks for, read once per deployment."""

    destination: str
    sampling_percentage: float
    capture_input: bool
    capture_output: bool
    csv_types: frozenset[str] = frozenset()
    json_types: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CaptureSettings | None:
        """The settings of a DataCaptureConfig, or None when it captures nothing."""
        if not config.get("EnableCapture", True):
            return None
        modes = {option["CaptureMode"] for option in config.get("CaptureOptions") or []}
        header = config.get("CaptureContentTypeHeader") or {}
        settings = cls(
            destination=str(config["DestinationS3Uri"]),
            sampling_percentage=float(config.get("InitialSamplingPercentage", 0)),
            capture_input=bool(modes & INPUT_MODES),
            capture_output=bool(modes & OUTPUT_MODES),
            csv_types=_media_types(header.get("CsvContentTypes") or ()),
            json_types=_media_types(header.get("JsonContentTypes") or ()),
        )
        if settings.sampling_percentage <= 0 or not (
            settings.capture_input or settings.capture_output
        ):
            return None
        return settings


def encoding_for(content_type: str, settings: CaptureSettings) -> str:
    """CSV or JSON when CaptureContentTypeHeader lists the media type (parameters such as
    ``; charset=utf-8`` ignored, case-insensitive), else BASE64."""
    media = _media_type(content_type)
    if media in settings.csv_types:
        return CSV
    if media in settings.json_types:
        return JSON
    return BASE64


def capture_data(
    body: bytes, content_type: str | None, mode: str, settings: CaptureSettings
) -> dict[str, str]:
    """One ``endpointInput`` or ``endpointOutput`` member (``mode`` is INPUT or OUTPUT)."""
    observed = content_type or DEFAULT_CONTENT_TYPE
    encoding = encoding_for(observed, settings)
    data: str | None = None
    if encoding != BASE64:
        try:
            data = body.decode("utf-8")
        except UnicodeDecodeError:
            # sagehost: text that is not UTF-8 cannot go into JSON as is; keep it exact.
            encoding = BASE64
    if data is None:
        data = base64.b64encode(body).decode("ascii")
    return {"observedContentType": observed, "mode": mode, "data": data, "encoding": encoding}


def capture_record(
    *,
    settings: CaptureSettings,
    request_body: bytes,
    request_type: str | None,
    response_body: bytes,
    response_type: str | None,
    event_id: str,
    inference_time: float,
    inference_id: str | None = None,
) -> dict[str, Any]:
    """The capture record of one call; ``inference_time`` is epoch seconds."""
    data: dict[str, Any] = {}
    if settings.capture_input:
        data["endpointInput"] = capture_data(request_body, request_type, "INPUT", settings)
    if settings.capture_output:
        data["endpointOutput"] = capture_data(response_body, response_type, "OUTPUT", settings)
    metadata: dict[str, str] = {"eventId": event_id}
    if inference_id is not None:
        metadata["inferenceId"] = inference_id
    metadata["inferenceTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(inference_time))
    return {"captureData": data, "eventMetadata": metadata, "eventVersion": EVENT_VERSION}


def encode_line(record: dict[str, Any]) -> bytes:
    """One JSON Lines line, newline included."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def hour_prefix(destination: str, endpoint: str, variant: str, when: float) -> str:
    """``<destination>/<endpoint>/<variant>/yyyy/mm/dd/hh``: the folder of a record's hour."""
    return join_location(
        destination, endpoint, variant, time.strftime("%Y/%m/%d/%H", time.gmtime(when))
    )


def object_url(prefix: str, when: float, file_id: str) -> str:
    """The object a batch is written to, under its hour's ``prefix``."""
    stamp = time.gmtime(when)
    millis = int((when % 1) * 1000)
    return join_location(
        prefix, f"{stamp.tm_min:02d}-{stamp.tm_sec:02d}-{millis:03d}-{file_id}.jsonl"
    )


def parse_lines(data: bytes) -> list[dict[str, Any]]:
    """The records of a capture object (a reader for tests and tools)."""
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _media_types(types: Iterable[str] | Sequence[str]) -> frozenset[str]:
    return frozenset(_media_type(t) for t in types)
