"""The wire error catalogue: every AWS error shape sagehost emits, and how it is rendered.

Runtime operations speak rest-json: the code travels in ``X-Amzn-ErrorType`` and the body holds
``Message`` plus the modeled members. The control plane speaks JSON 1.1: the code travels as
``__type`` in the body. Both always carry a JSON body, because botocore treats an empty 5xx body
as a generic error and loses the code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

JSON_CONTENT_TYPE = "application/json"
AMZ_JSON_CONTENT_TYPE = "application/x-amz-json-1.1"


@dataclass(frozen=True)
class WireError:
    """One error response: status, AWS code, message and any extra modeled members."""

    status: int
    code: str
    message: str
    members: dict[str, Any] = field(default_factory=dict)


def validation_error(message: str, error_code: str = "VALIDATION_ERROR") -> WireError:
    return WireError(400, "ValidationError", message, {"ErrorCode": error_code})


def model_error(
    message: str, *, original_status: int, original_message: str, log_stream_arn: str
) -> WireError:
    code = "CLIENT_ERROR_FROM_MODEL" if 0 < original_status < 500 else "SERVER_ERROR_FROM_MODEL"
    return WireError(
        424,
        "ModelError",
        message,
        {
            "ErrorCode": code,
            "OriginalStatusCode": original_status,
            "OriginalMessage": original_message,
            "LogStreamArn": log_stream_arn,
        },
    )


def model_not_ready(message: str) -> WireError:
    return WireError(429, "ModelNotReadyException", message)


def internal_failure() -> WireError:
    return WireError(500, "InternalFailure", "An internal failure occurred.")


def service_unavailable(message: str) -> WireError:
    return WireError(503, "ServiceUnavailable", message)


def dependency_failed(message: str) -> WireError:
    return WireError(530, "InternalDependencyException", message)


def auth_error(code: str, message: str) -> WireError:
    status = 400 if code == "IncompleteSignatureException" else 403
    return WireError(status, code, message)


def control_validation(message: str) -> WireError:
    return WireError(400, "ValidationException", message)


def unknown_operation(target: str) -> WireError:
    return WireError(400, "UnknownOperationException", f"Unknown operation {target}")


def render_rest_json(error: WireError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Render for the runtime API (rest-json)."""
    body = {**error.members, "Message": error.message, "message": error.message}
    headers = [
        (b"x-amzn-errortype", error.code.encode()),
        (b"content-type", JSON_CONTENT_TYPE.encode()),
    ]
    return error.status, headers, json.dumps(body).encode()


def render_json_1_1(error: WireError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Render for the control plane (JSON 1.1)."""
    body = {"__type": error.code, "Message": error.message, "message": error.message}
    headers = [
        (b"x-amzn-errortype", error.code.encode()),
        (b"content-type", AMZ_JSON_CONTENT_TYPE.encode()),
    ]
    return error.status, headers, json.dumps(body).encode()
