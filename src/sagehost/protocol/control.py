"""The control-plane protocol (JSON 1.1): ``X-Amz-Target`` and body in, JSON body out.

Input members are validated against botocore's ``sagemaker`` service model; output is shaped by
it (unknown keys dropped, timestamps as epoch-second numbers). Pure: the caller passes the model.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from botocore.model import ServiceModel, Shape

from sagehost.protocol.shapes import format_violations, to_wire, validate

TARGET_PREFIX = "SageMaker."

# sagehost extensions to the service models' patterns, by shape name:
# - ModelDataUrl ("Url") also takes file:// URLs and plain paths, so models can live on disk;
# - an Image ("ContainerImage") may be "process:<command line>", which has spaces;
# - async results ("DestinationS3Uri") may go to file:// URLs;
# - async notifications ("SnsTopicArn") may go to http(s):// webhooks;
# - an async InputLocation ("InputLocationHeader") may be a file:// URL.
EXTENDED_PATTERNS = {
    "Url": r"(https|s3|file)://([^/]*)/?(.*)|[^:]+",
    "ContainerImage": r"[\S]+|process:.+",
    "DestinationS3Uri": r"(https|s3)://([^/])/?(.*)|file://.+",
    "SnsTopicArn": r"arn:aws[a-z\-]*:sns:[a-z0-9\-]*:[0-9]{12}:[a-zA-Z0-9_.-]+|https?://.+",
    "InputLocationHeader": r"^(https|s3)://([^/]+)/?(.*)$|^file://.+$",
}


def extend_model(service: dict[str, Any]) -> dict[str, Any]:
    """A copy of a raw service model with sagehost's extended patterns for the shapes it has."""
    shapes = dict(service["shapes"])
    for name, pattern in EXTENDED_PATTERNS.items():
        if name in shapes:
            shapes[name] = {**shapes[name], "pattern": pattern}
    return {**service, "shapes": shapes}


class ControlRequestInvalid(Exception):
    def __init__(self, message: str, code: str = "ValidationException") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ControlProtocol:
    def __init__(self, model: ServiceModel, operations: frozenset[str]) -> None:
        self._inputs: dict[str, Shape | None] = {}
        self._outputs: dict[str, Shape | None] = {}
        for name in operations:
            op = model.operation_model(name)
            self._inputs[name] = op.input_shape
            self._outputs[name] = op.output_shape

    def operation(self, target: str | None) -> str:
        """The operation named by ``X-Amz-Target``; raises for one we do not serve."""
        if target and target.startswith(TARGET_PREFIX):
            name = target[len(TARGET_PREFIX) :]
            if name in self._inputs:
                return name
        raise ControlRequestInvalid(
            f"Unknown operation {target or '(no X-Amz-Target)'}", "UnknownOperationException"
        )

    def parse(self, operation: str, body: bytes) -> dict[str, Any]:
        try:
            params = json.loads(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            raise ControlRequestInvalid(
                "The request body is not valid JSON.", "SerializationException"
            ) from None
        if not isinstance(params, dict):
            raise ControlRequestInvalid(
                "The request body must be a JSON object.", "SerializationException"
            )
        shape = self._inputs[operation]
        if shape is None:
            return {}
        violations = validate(shape, params)
        if violations:
            # A member of the wrong JSON type is a serialization fault on AWS, not a validation one.
            code = (
                "SerializationException"
                if any(v.type_error for v in violations)
                else "ValidationException"
            )
            raise ControlRequestInvalid(format_violations(violations), code)
        return _timestamps_to_epoch(shape, params)

    def render(self, operation: str, result: dict[str, Any]) -> bytes:
        shape = self._outputs[operation]
        if shape is None:
            return b"{}"
        return json.dumps(to_wire(shape, result), separators=(",", ":")).encode()


def _timestamps_to_epoch(shape: Shape, params: dict[str, Any]) -> dict[str, Any]:
    """Top-level timestamp members (the List* filters) as epoch floats for the services."""
    out = dict(params)
    for name, member in shape.members.items():  # type: ignore[attr-defined]
        value = out.get(name)
        if member.type_name == "timestamp" and isinstance(value, str):
            try:
                out[name] = float(value)
            except ValueError:
                out[name] = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return out
