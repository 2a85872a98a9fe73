"""The event-stream encoder against literal bytes and against botocore as the independent decoder.

botocore's ``EventStreamBuffer`` checks framing and CRCs; its ``EventStream`` with the real
``sagemaker-runtime`` model turns frames into what a boto3 user sees.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import botocore.parsers
import botocore.session
import pytest
from botocore.awsrequest import HeadersDict
from botocore.eventstream import EventStream, EventStreamBuffer, EventStreamMessage
from botocore.exceptions import EventStreamError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagehost.protocol import eventstream as es
from sagehost.protocol.eventstream import HeaderValue, Int, Timestamp

OPERATION = "InvokeEndpointWithResponseStream"


def bitwise_crc32(data: bytes) -> int:
    """Reflected CRC-32 (poly 0xEDB88320), written out so the literals are not zlib checking zlib."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


class Decoded(NamedTuple):
    headers: dict[str, Any]
    payload: bytes


def decode_all(data: bytes, chunk_sizes: Sequence[int] = ()) -> list[Decoded]:
    """Feed ``data`` to botocore's decoder in pieces of the given sizes, then the rest."""
    buffer = EventStreamBuffer()
    messages: list[EventStreamMessage] = []
    offset = 0
    for size in [*chunk_sizes, len(data)]:
        buffer.add_data(data[offset : offset + size])
        offset += size
        messages.extend(buffer)
    # botocore-stubs mistypes prelude and headers as int.
    raw: list[Any] = messages
    assert sum(m.prelude.total_length for m in raw) == len(data)  # no half frame left over
    return [Decoded(m.headers, m.payload) for m in raw]


def decode_one(frame: bytes) -> Decoded:
    messages = decode_all(frame)
    assert len(messages) == 1
    return messages[0]


# --- literal bytes -----------------------------------------------------------------------------


def test_empty_message_is_the_16_byte_frame() -> None:
    # total 16, headers 0; both CRCs checked against the bitwise CRC below.
    assert es.encode_message((), b"") == bytes.fromhex("00000010 00000000 05c248eb 7d98c8ff")
    assert bitwise_crc32(bytes.fromhex("0000001000000000")) == 0x05C248EB
    assert bitwise_crc32(bytes.fromhex("0000001000000000 05c248eb")) == 0x7D98C8FF


def test_small_message_exact_bytes() -> None:
    # Header a="b": name_len 01, "a", type 07, len 0001, "b" = 6 bytes. Payload "hi".
    # total = 12 + 6 + 2 + 4 = 24 = 0x18.
    prelude = bytes.fromhex("00000018 00000006")
    prelude_crc = bytes.fromhex("dcd1a61f")
    headers = bytes.fromhex("01 61 07 0001 62")
    message_crc = bytes.fromhex("88e21d9c")
    expected = prelude + prelude_crc + headers + b"hi" + message_crc

    assert es.encode_message([("a", "b")], b"hi") == expected
    assert bitwise_crc32(prelude) == 0xDCD1A61F
    assert bitwise_crc32(prelude + prelude_crc + headers + b"hi") == 0x88E21D9C


def test_crc_placement_in_payload_part() -> None:
    frame = es.payload_part(b"token ")
    header_block = (
        b"\x0d:message-type\x07\x00\x05event"
        b"\x0b:event-type\x07\x00\x0bPayloadPart"
        b"\x0d:content-type\x07\x00\x18application/octet-stream"
    )
    total = 12 + len(header_block) + 6 + 4
    assert frame[0:4] == total.to_bytes(4, "big")
    assert frame[4:8] == len(header_block).to_bytes(4, "big")
    assert frame[8:12] == bitwise_crc32(frame[:8]).to_bytes(4, "big")
    assert frame[12 : 12 + len(header_block)] == header_block
    assert frame[12 + len(header_block) : -4] == b"token "
    assert frame[-4:] == bitwise_crc32(frame[:-4]).to_bytes(4, "big")
    assert len(frame) == total


def test_every_header_type_encodes_as_the_table_says() -> None:
    u = uuid.UUID("00010203-0405-0607-0809-0a0b0c0d0e0f")
    frame = es.encode_message(
        [
            ("t", True),
            ("f", False),
            ("b", Int(-1, 1)),
            ("s", Int(0x1234, 2)),
            ("i", Int(-2, 4)),
            ("l", Int(1, 8)),
            ("y", b"\x00\xff"),
            ("z", "é"),
            ("ts", Timestamp(1_700_000_000_123)),
            ("u", u),
        ],
        b"",
    )
    expected_headers = (
        bytes.fromhex("01 74 00")
        + bytes.fromhex("01 66 01")
        + bytes.fromhex("01 62 02 ff")
        + bytes.fromhex("01 73 03 1234")
        + bytes.fromhex("01 69 04 fffffffe")
        + bytes.fromhex("01 6c 05 0000000000000001")
        + bytes.fromhex("01 79 06 0002 00ff")
        + bytes.fromhex("01 7a 07 0002 c3a9")
        + bytes.fromhex("02 7473 08")
        + (1_700_000_000_123).to_bytes(8, "big")
        + bytes.fromhex("01 75 09 000102030405060708090a0b0c0d0e0f")
    )
    assert frame[12:-4] == expected_headers

    decoded = decode_one(frame).headers
    assert decoded == {
        "t": True,
        "f": False,
        "b": -1,
        "s": 0x1234,
        "i": -2,
        "l": 1,
        "y": b"\x00\xff",
        "z": "é",
        "ts": 1_700_000_000_123,
        "u": u.bytes,
    }


# --- the server's messages, decoded by botocore ------------------------------------------------


def test_payload_part_headers_and_payload() -> None:
    message = decode_one(es.payload_part(b"token "))
    assert message.headers == {
        ":message-type": "event",
        ":event-type": "PayloadPart",
        ":content-type": "application/octet-stream",
    }
    assert message.payload == b"token "


def test_model_stream_error_frame() -> None:
    message = decode_one(es.model_stream_error("boom", es.STREAM_BROKEN))
    assert message.headers == {
        ":message-type": "exception",
        ":exception-type": "ModelStreamError",
        ":content-type": "application/json",
    }
    assert message.payload == b'{"Message":"boom","ErrorCode":"StreamBroken"}'


def test_internal_stream_failure_frame() -> None:
    message = decode_one(es.internal_stream_failure('quote " and ü'))
    assert message.headers == {
        ":message-type": "exception",
        ":exception-type": "InternalStreamFailure",
        ":content-type": "application/json",
    }
    assert json.loads(message.payload) == {"Message": 'quote " and ü'}


def test_protocol_error_frame() -> None:
    message = decode_one(es.protocol_error("InternalFailure", "the worker went away"))
    assert message.headers == {
        ":message-type": "error",
        ":error-code": "InternalFailure",
        ":error-message": "the worker went away",
    }
    assert message.payload == b""


# --- full round trip through botocore's parser and the sagemaker-runtime model ------------------


class FakeRawStream:
    """Stands in for urllib3's response: EventStream only calls stream() and close()."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = list(chunks)
        self.closed = False

    def stream(self) -> Iterator[bytes]:
        yield from self._chunks

    def close(self) -> None:
        self.closed = True


@pytest.fixture(scope="module")
def output_shape() -> Any:
    model = botocore.session.get_session().get_service_model("sagemaker-runtime")
    return model.operation_model(OPERATION).output_shape


def parse_stream(
    output_shape: Any, chunks: Sequence[bytes]
) -> tuple[dict[str, Any], EventStream[Any]]:
    """What botocore's client hands back for a 200 response whose body is ``chunks``."""
    headers = HeadersDict(
        {
            "X-Amzn-SageMaker-Content-Type": "text/event-stream",
            "x-Amzn-Invoked-Production-Variant": "AllTraffic",
        }
    )
    response = {
        "status_code": 200,
        "headers": headers,
        "body": FakeRawStream(chunks),
        "context": {"operation_name": OPERATION},
    }
    parsed = botocore.parsers.create_parser("rest-json").parse(response, output_shape)
    body = parsed["Body"]
    assert isinstance(body, EventStream)
    return parsed, body


def test_round_trip_payload_parts(output_shape: Any) -> None:
    frames = es.payload_part(b"Hello") + es.payload_part(b"") + es.payload_part(b", world")
    parsed, body = parse_stream(output_shape, [frames[:7], frames[7:50], frames[50:]])
    assert parsed["ContentType"] == "text/event-stream"
    assert parsed["InvokedProductionVariant"] == "AllTraffic"
    assert list(body) == [
        {"PayloadPart": {"Bytes": b"Hello"}},
        {"PayloadPart": {"Bytes": b""}},
        {"PayloadPart": {"Bytes": b", world"}},
    ]


def test_round_trip_model_stream_error_after_parts(output_shape: Any) -> None:
    frames = [
        es.payload_part(b"one"),
        es.payload_part(b"two"),
        es.model_stream_error("Model invocation time exceeded", es.MODEL_INVOCATION_TIME_EXCEEDED),
    ]
    _, body = parse_stream(output_shape, frames)
    events = iter(body)
    assert next(events) == {"PayloadPart": {"Bytes": b"one"}}
    assert next(events) == {"PayloadPart": {"Bytes": b"two"}}
    with pytest.raises(EventStreamError) as caught:
        next(events)
    assert caught.value.response == {
        "Error": {"Code": "ModelStreamError", "Message": "Model invocation time exceeded"}
    }
    assert caught.value.operation_name == OPERATION


def test_round_trip_internal_stream_failure(output_shape: Any) -> None:
    _, body = parse_stream(
        output_shape, [es.payload_part(b"x"), es.internal_stream_failure("oops")]
    )
    events = iter(body)
    assert next(events) == {"PayloadPart": {"Bytes": b"x"}}
    with pytest.raises(EventStreamError) as caught:
        next(events)
    assert caught.value.response == {"Error": {"Code": "InternalStreamFailure", "Message": "oops"}}


def test_round_trip_protocol_error(output_shape: Any) -> None:
    _, body = parse_stream(output_shape, [es.protocol_error("ThrottlingException", "slow down")])
    with pytest.raises(EventStreamError) as caught:
        list(body)
    assert caught.value.response == {
        "Error": {"Code": "ThrottlingException", "Message": "slow down"}
    }


# --- properties -----------------------------------------------------------------------------


def _utf8_len_between(low: int, high: int) -> Any:
    return lambda s: low <= len(s.encode("utf-8")) <= high


header_names = st.text(min_size=1, max_size=40).filter(_utf8_len_between(1, 255))

# Each value with what botocore decodes it to.
header_values: st.SearchStrategy[tuple[HeaderValue, object]] = st.one_of(
    st.text(max_size=200).map(lambda s: (s, s)),
    st.binary(max_size=200).map(lambda b: (b, b)),
    st.booleans().map(lambda b: (b, b)),
    st.integers(-(2**7), 2**7 - 1).map(lambda n: (Int(n, 1), n)),
    st.integers(-(2**15), 2**15 - 1).map(lambda n: (Int(n, 2), n)),
    st.integers(-(2**31), 2**31 - 1).map(lambda n: (Int(n, 4), n)),
    st.integers(-(2**63), 2**63 - 1).map(lambda n: (Int(n, 8), n)),
    st.integers(-(2**63), 2**63 - 1).map(lambda n: (Timestamp(n), n)),
    st.uuids().map(lambda u: (u, u.bytes)),
)
header_maps = st.dictionaries(header_names, header_values, max_size=8)
payloads = st.binary(max_size=64 * 1024)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers=header_maps, payload=payloads)
def test_botocore_reads_back_headers_and_payload(
    headers: dict[str, tuple[HeaderValue, object]], payload: bytes
) -> None:
    frame = es.encode_message([(name, value) for name, (value, _) in headers.items()], payload)
    message = decode_one(frame)
    assert message.headers == {name: decoded for name, (_, decoded) in headers.items()}
    assert list(message.headers) == list(headers)
    assert message.payload == payload


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.lists(st.tuples(header_maps, st.binary(max_size=2048)), min_size=1, max_size=6),
    data=st.data(),
)
def test_frames_split_anywhere_still_decode(
    frames: list[tuple[dict[str, tuple[HeaderValue, object]], bytes]], data: st.DataObject
) -> None:
    stream = b"".join(
        es.encode_message([(n, v) for n, (v, _) in headers.items()], payload)
        for headers, payload in frames
    )
    chunk_sizes = data.draw(st.lists(st.integers(0, 300), max_size=40))
    messages = decode_all(stream, chunk_sizes)
    assert [(m.headers, m.payload) for m in messages] == [
        ({n: d for n, (_, d) in headers.items()}, payload) for headers, payload in frames
    ]


@settings(deadline=None)
@given(parts=st.lists(st.binary(max_size=512), max_size=10), data=st.data())
def test_payload_parts_split_anywhere_through_event_stream(
    output_shape: Any, parts: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(es.payload_part(p) for p in parts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    _, body = parse_stream(output_shape, chunks)
    assert list(body) == [{"PayloadPart": {"Bytes": p}} for p in parts]


# --- limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "n" * 256, "é" * 128])
def test_header_name_length_outside_1_to_255_bytes(name: str) -> None:
    with pytest.raises(ValueError, match="1-255 UTF-8 bytes"):
        es.encode_message([(name, "v")], b"")


def test_header_name_of_255_bytes_is_accepted() -> None:
    name = "é" * 127 + "n"  # 255 bytes
    assert decode_one(es.encode_message([(name, "v")], b"")).headers == {name: "v"}


def test_duplicate_header_name() -> None:
    with pytest.raises(ValueError, match="duplicate header name ':event-type'"):
        es.encode_message([(":event-type", "a"), (":event-type", "b")], b"")


@pytest.mark.parametrize("value", ["x" * 65536, b"x" * 65536, "é" * 32768])
def test_value_over_65535_bytes(value: str | bytes) -> None:
    with pytest.raises(ValueError, match="limit is 65535"):
        es.encode_message([("v", value)], b"")


def test_value_of_65535_bytes_is_accepted() -> None:
    assert decode_one(es.encode_message([("s", "x" * 65535)], b"")).headers == {"s": "x" * 65535}
    assert decode_one(es.encode_message([("b", b"y" * 65535)], b"")).headers == {"b": b"y" * 65535}


def test_headers_up_to_128_kib() -> None:
    # Each string header is 1 + 1 (name) + 1 (type) + 2 (length) + value bytes.
    first = ("a", "x" * 65535)  # 65540 bytes
    exact = [first, ("b", "y" * (128 * 1024 - 65540 - 5))]
    assert len(decode_one(es.encode_message(exact, b"")).headers) == 2

    over = [first, ("b", "y" * (128 * 1024 - 65540 - 5 + 1))]
    with pytest.raises(ValueError, match="limit is 131072"):
        es.encode_message(over, b"")


def test_payload_up_to_24_mib() -> None:
    limit = 24 * 1024 * 1024
    frame = es.encode_message([], bytes(limit))
    assert len(frame) == limit + 16
    assert decode_one(frame).payload == bytes(limit)

    with pytest.raises(ValueError, match="limit is 25165824"):
        es.encode_message([], bytes(limit + 1))
    with pytest.raises(ValueError, match="limit is 25165824"):
        es.payload_part(bytes(limit + 1))


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (Int(128, 1), "does not fit in 1 bytes"),
        (Int(-(2**15) - 1, 2), "does not fit in 2 bytes"),
        (Int(2**31, 4), "does not fit in 4 bytes"),
        (Int(2**63, 8), "does not fit in 8 bytes"),
        (Int(0, 3), "width must be 1, 2, 4 or 8"),  # type: ignore[arg-type]
        (Timestamp(2**63), "timestamp out of range"),
    ],
)
def test_integer_out_of_range(value: HeaderValue, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        es.encode_message([("n", value)], b"")


def test_plain_int_needs_a_width() -> None:
    with pytest.raises(TypeError, match="unsupported value type int"):
        es.encode_message([("n", 5)], b"")  # type: ignore[list-item]
