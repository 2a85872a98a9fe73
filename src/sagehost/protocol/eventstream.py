"""Encoder for ``application/vnd.amazon.eventstream`` frames (spec §4.3).

The InvokeEndpointWithResponseStream body is a sequence of these frames. Each one is::

    total_length u32 | headers_length u32 | prelude_crc u32 | headers | payload | message_crc u32

with both CRCs the IEEE CRC-32 of ``zlib.crc32``: the prelude CRC covers the first 8 bytes,
the message CRC everything before it. Pure: bytes in, bytes out.

No maintained library offers an encoder we could depend on: botocore ships only the decoder,
awscrt exposes event-stream framing only inside its native RPC client connection, and
smithy-aws-event-stream is pre-alpha and needs Python 3.12.

The limits are those botocore's decoder enforces, so a frame we build is one it accepts.
"""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from zlib import crc32

__all__ = [
    "CONTENT_TYPE",
    "MAX_HEADERS_LENGTH",
    "MAX_PAYLOAD_LENGTH",
    "MODEL_INVOCATION_TIME_EXCEEDED",
    "STREAM_BROKEN",
    "HeaderValue",
    "Int",
    "Timestamp",
    "encode_headers",
    "encode_message",
    "internal_stream_failure",
    "model_stream_error",
    "payload_part",
    "protocol_error",
]

CONTENT_TYPE = "application/vnd.amazon.eventstream"

MAX_HEADERS_LENGTH = 128 * 1024
MAX_PAYLOAD_LENGTH = 24 * 1024 * 1024
MAX_VALUE_LENGTH = 0xFFFF  # the u16 length prefix of bytes and string values

# ModelStreamError codes (spec §4.3).
MODEL_INVOCATION_TIME_EXCEEDED = "ModelInvocationTimeExceeded"
STREAM_BROKEN = "StreamBroken"

_PRELUDE_AND_CRCS = 16  # 12-byte prelude plus the trailing 4-byte message CRC

_pack_prelude = struct.Struct(">II").pack
_pack_u32 = struct.Struct(">I").pack

_INT_TYPES: dict[int, tuple[int, struct.Struct]] = {
    1: (2, struct.Struct(">b")),
    2: (3, struct.Struct(">h")),
    4: (4, struct.Struct(">i")),
    8: (5, struct.Struct(">q")),
}
_TIMESTAMP = struct.Struct(">q")


@dataclass(frozen=True, slots=True)
class Int:
    """A signed integer header value and its wire width in bytes (types 2, 3, 4 and 5)."""

    value: int
    width: Literal[1, 2, 4, 8] = 4


@dataclass(frozen=True, slots=True)
class Timestamp:
    """A timestamp header value (type 8): signed milliseconds since the epoch."""

    millis: int


# A plain int is not accepted: its wire width would be a guess, so it must be wrapped in Int.
HeaderValue = str | bytes | bool | Int | Timestamp | uuid.UUID


def _encode_value(name: str, value: HeaderValue) -> bytes:
    if isinstance(value, str | bytes):
        raw = value.encode("utf-8") if isinstance(value, str) else value
        if len(raw) > MAX_VALUE_LENGTH:
            raise ValueError(
                f"header {name!r}: value is {len(raw)} bytes, the limit is {MAX_VALUE_LENGTH}"
            )
        kind = b"\x07" if isinstance(value, str) else b"\x06"
        return kind + len(raw).to_bytes(2, "big") + raw
    if isinstance(value, bool):
        return b"\x00" if value else b"\x01"
    if isinstance(value, Int):
        if value.width not in _INT_TYPES:
            raise ValueError(f"header {name!r}: integer width must be 1, 2, 4 or 8 bytes")
        type_code, packer = _INT_TYPES[value.width]
        try:
            return bytes((type_code,)) + packer.pack(value.value)
        except struct.error:
            raise ValueError(
                f"header {name!r}: {value.value} does not fit in {value.width} bytes"
            ) from None
    if isinstance(value, Timestamp):
        try:
            return b"\x08" + _TIMESTAMP.pack(value.millis)
        except struct.error:
            raise ValueError(f"header {name!r}: timestamp out of range") from None
    if isinstance(value, uuid.UUID):
        return b"\x09" + value.bytes
    raise TypeError(f"header {name!r}: unsupported value type {type(value).__name__}")


def encode_headers(headers: Sequence[tuple[str, HeaderValue]]) -> bytes:
    """The header block of a frame, in the order given."""
    seen: set[str] = set()
    parts: list[bytes] = []
    for name, value in headers:
        raw_name = name.encode("utf-8")
        if not 1 <= len(raw_name) <= 255:
            raise ValueError(f"header name {name!r} must be 1-255 UTF-8 bytes")
        # botocore keeps headers in a dict and rejects a repeated name rather than pick one.
        if name in seen:
            raise ValueError(f"duplicate header name {name!r}")
        seen.add(name)
        parts.append(bytes((len(raw_name),)) + raw_name + _encode_value(name, value))
    block = b"".join(parts)
    if len(block) > MAX_HEADERS_LENGTH:
        raise ValueError(f"headers are {len(block)} bytes, the limit is {MAX_HEADERS_LENGTH}")
    return block


def _frame(header_block: bytes, payload: bytes) -> bytes:
    length = len(payload)
    if length > MAX_PAYLOAD_LENGTH:
        raise ValueError(f"payload is {length} bytes, the limit is {MAX_PAYLOAD_LENGTH}")
    headers_length = len(header_block)
    prelude = _pack_prelude(length + headers_length + _PRELUDE_AND_CRCS, headers_length)
    head = prelude + _pack_u32(crc32(prelude)) + header_block
    # The payload is the only large piece: it is copied once, by join.
    return b"".join((head, payload, _pack_u32(crc32(payload, crc32(head)))))


def encode_message(headers: Sequence[tuple[str, HeaderValue]], payload: bytes) -> bytes:
    """One complete frame with ``headers`` (in order) and ``payload``.

    Raises ValueError when a limit botocore's decoder enforces would be broken, and TypeError
    for a header value of an unsupported type.
    """
    return _frame(encode_headers(headers), payload)


# Constant header blocks, built once; payload_part is on the per-token hot path.
_PAYLOAD_PART_HEADERS = encode_headers(
    (
        (":message-type", "event"),
        (":event-type", "PayloadPart"),
        (":content-type", "application/octet-stream"),
    )
)
_MODEL_STREAM_ERROR_HEADERS = encode_headers(
    (
        (":message-type", "exception"),
        (":exception-type", "ModelStreamError"),
        (":content-type", "application/json"),
    )
)
_INTERNAL_STREAM_FAILURE_HEADERS = encode_headers(
    (
        (":message-type", "exception"),
        (":exception-type", "InternalStreamFailure"),
        (":content-type", "application/json"),
    )
)


def payload_part(data: bytes) -> bytes:
    """A ``PayloadPart`` event whose ``Bytes`` are ``data``, not wrapped in JSON."""
    return _frame(_PAYLOAD_PART_HEADERS, data)


def _json(body: dict[str, str]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def model_stream_error(message: str, error_code: str) -> bytes:
    """A ``ModelStreamError`` exception; the body must be closed after it.

    ``error_code`` is :data:`MODEL_INVOCATION_TIME_EXCEEDED` or :data:`STREAM_BROKEN`.
    botocore drops it and surfaces only ``Message``; the JS SDK keeps both.
    """
    return _frame(_MODEL_STREAM_ERROR_HEADERS, _json({"Message": message, "ErrorCode": error_code}))


def internal_stream_failure(message: str) -> bytes:
    """An ``InternalStreamFailure`` exception; the body must be closed after it."""
    return _frame(_INTERNAL_STREAM_FAILURE_HEADERS, _json({"Message": message}))


def protocol_error(code: str, message: str) -> bytes:
    """A protocol-level ``error`` message: clients raise an error named ``code``."""
    return encode_message(
        ((":message-type", "error"), (":error-code", code), (":error-message", message)),
        b"",
    )
