"""The JSON documents async inference publishes, in the shape SageMaker uses (§5.3).

``failureLocation`` inside ``responseParameters`` and ``responseBody`` (with
``IncludeInferenceResponseIn``) are sagehost's names where AWS documents none.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from sagehost.core.ports import Job

# Responses larger than this are not embedded in notifications (AWS's limit).
MAX_EMBEDDED_RESPONSE = 128 * 1024


def _iso(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _base(job: Job, region: str, now: float, status: str) -> dict[str, Any]:
    request: dict[str, Any] = {
        "endpointName": job.endpoint_name,
        "inputLocation": job.input_location,
    }
    if job.content_type is not None:
        request["contentType"] = job.content_type
    return {
        "awsRegion": region,
        "eventTime": _iso(now),
        "receivedTime": _iso(job.enqueued_at),
        "invocationStatus": status,
        "requestParameters": request,
        "inferenceId": job.inference_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }


def success(
    job: Job, region: str, now: float, content_type: str | None, embedded: bytes | None
) -> str:
    message = _base(job, region, now, "Completed")
    response: dict[str, Any] = {"outputLocation": job.output_location}
    if content_type is not None:
        response["contentType"] = content_type
    message["responseParameters"] = response
    if embedded is not None:
        message["responseBody"] = _body(embedded, content_type)
    return json.dumps(message)


def failure(
    job: Job, region: str, now: float, reason: str, content_type: str | None, embedded: bytes | None
) -> str:
    message = _base(job, region, now, "Failed")
    message["failureReason"] = reason
    if job.failure_location is not None:
        message["responseParameters"] = {"failureLocation": job.failure_location}
    if embedded is not None:
        message["responseBody"] = _body(embedded, content_type)
    return json.dumps(message)


def test_notification() -> str:
    return json.dumps(
        {"eventVersion": "1.0", "eventSource": "aws:sagemaker", "eventName": "TestNotification"}
    )


def _body(data: bytes, content_type: str | None) -> dict[str, Any]:
    try:
        content: str = data.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        content = base64.b64encode(data).decode()
        encoding = "base64"
    return {"content": content, "contentType": content_type, "encoding": encoding}
