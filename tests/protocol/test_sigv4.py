"""SigV4 verification against botocore as the independent signer.

botocore's clock is pinned (it is the peer, not our code) so the expiry messages can be
compared as literal strings.
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal
from unittest import mock
from urllib.parse import quote, urlsplit

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sagehost.protocol import sigv4
from sagehost.protocol.sigv4 import Credential, SigV4Error

AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLETOKEN//+="
SIGNED_AT = datetime(2025, 1, 2, 3, 4, 5)
AMZ_DATE = "20250102T030405Z"
NOW = float(calendar.timegm(SIGNED_AT.timetuple()))
URL = "http://127.0.0.1:8080"
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


@dataclass(frozen=True)
class Received:
    """A request as the server would see it."""

    method: str
    raw_path: str
    query_string: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        assert len(values) == 1, (name, values)
        return values[0]

    def without(self, name: str) -> Received:
        kept = [(n, v) for n, v in self.headers if n.lower() != name.lower()]
        assert len(kept) < len(self.headers)
        return replace(self, headers=kept)

    def with_header(self, name: str, value: str) -> Received:
        """Replace an existing header."""
        return self.without(name).plus(name, value)

    def plus(self, name: str, value: str) -> Received:
        return replace(self, headers=[*self.headers, (name, value)])


@pytest.fixture(autouse=True)
def _fresh_key_cache() -> Iterator[None]:
    sigv4._keyed_hmac.cache_clear()
    yield


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _received(method: str, url: str, headers: Any, body: bytes | None) -> Received:
    """What reaches the server: urllib3 adds Host from the URL after botocore signs."""
    parts = urlsplit(url)
    items = [(_text(n), _text(v)) for n, v in headers.items()]
    if not any(n.lower() == "host" for n, _ in items):
        items.append(("Host", parts.netloc))
    return Received(method, parts.path, parts.query, items, body or b"")


def _sign(
    url: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    method: str = "POST",
    service: str = "sagemaker",
    token: str | None = None,
    secret: str = SECRET,
) -> Received:
    """Sign with botocore at SIGNED_AT, then add unsigned headers the way a client does."""
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in headers:
        request.headers[name] = value  # HTTPHeaders appends, so repeats are kept
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=SIGNED_AT):
        botocore.auth.SigV4Auth(Credentials(AKID, secret, token), service, "eu-west-1").add_auth(
            request
        )
    # Read the signed headers before prepare(): it keeps one value per name, the wire keeps all.
    received = _received(method, url, request.headers, body)
    # Content-Length is added after signing; botocore never signs the other two.
    extra = [("User-Agent", "Boto3/1.43 test"), ("Accept-Encoding", "identity")]
    if method != "GET" and all(n.lower() != "content-length" for n, _ in headers):
        extra.append(("Content-Length", str(len(body))))
    return replace(received, headers=received.headers + extra)


class _Captured(Exception):
    def __init__(self, received: Received) -> None:
        super().__init__("captured")
        self.received = received


def _capture(
    service: Literal["sagemaker", "sagemaker-runtime"],
    operation: str,
    token: str | None = None,
    **params: Any,
) -> Received:
    """Run a real boto3 client call and take the request it would put on the wire."""
    client = boto3.client(
        service,
        endpoint_url=URL,
        region_name="us-west-2",
        aws_access_key_id=AKID,
        aws_secret_access_key=SECRET,
        aws_session_token=token,
    )

    def grab(request: Any, **_: Any) -> None:
        raise _Captured(_received(request.method, request.url, request.headers, request.body))

    client.meta.events.register(f"before-send.*.{operation}", grab)
    method = getattr(client, botocore.xform_name(operation))
    with (
        mock.patch.object(botocore.auth, "get_current_datetime", return_value=SIGNED_AT),
        pytest.raises(_Captured) as captured,
    ):
        method(**params)
    return captured.value.received


def _verify(received: Received, **overrides: Any) -> Credential:
    credential = sigv4.parse_authorization(received.header("Authorization"))
    kwargs: dict[str, Any] = {
        "method": received.method,
        "raw_path": received.raw_path,
        "query_string": received.query_string,
        "headers": received.headers,
        "body": received.body,
        "credential": credential,
        "secret_access_key": SECRET,
        "now": NOW,
    }
    kwargs.update(overrides)
    sigv4.verify(**kwargs)
    return credential


def _rejects(received: Received, code: str, message: str, **overrides: Any) -> None:
    with pytest.raises(SigV4Error) as raised:
        _verify(received, **overrides)
    assert (raised.value.code, raised.value.message) == (code, message)


# --- real boto3 clients -------------------------------------------------------------------


def test_botocore_invoke_endpoint_without_optional_headers() -> None:
    received = _capture("sagemaker-runtime", "InvokeEndpoint", EndpointName="ep", Body=b'{"x":1}')
    credential = _verify(received)
    assert credential == Credential(
        access_key_id=AKID,
        date="20250102",
        region="us-west-2",
        service="sagemaker",
        signed_headers=("host", "x-amz-date"),
        signature=credential.signature,
    )
    assert received.raw_path == "/endpoints/ep/invocations"


def test_botocore_invoke_endpoint_with_every_sagemaker_header() -> None:
    received = _capture(
        "sagemaker-runtime",
        "InvokeEndpoint",
        EndpointName="ep",
        Body=b"1,2,3",
        ContentType="text/csv",
        Accept="application/json",
        CustomAttributes="  trace   id=1  ",
        TargetModel="m.tar.gz",
        TargetVariant="v1",
        TargetContainerHostname="c1",
        InferenceId="inf-1",
        EnableExplanations="`true`",
        InferenceComponentName="ic",
        SessionId="sess",
    )
    credential = _verify(received)
    assert ";".join(credential.signed_headers) == (
        "accept;content-type;host;x-amz-date;x-amzn-sagemaker-custom-attributes;"
        "x-amzn-sagemaker-enable-explanations;x-amzn-sagemaker-inference-component;"
        "x-amzn-sagemaker-inference-id;x-amzn-sagemaker-session-id;"
        "x-amzn-sagemaker-target-container-hostname;x-amzn-sagemaker-target-model;"
        "x-amzn-sagemaker-target-variant"
    )
    tampered = received.with_header("X-Amzn-SageMaker-Target-Variant", "v2")
    _rejects(tampered, "InvalidSignatureException", MISMATCH)


def test_botocore_control_plane_post_with_target_and_json() -> None:
    received = _capture("sagemaker", "DescribeEndpoint", EndpointName="my-endpoint")
    credential = _verify(received)
    assert received.raw_path == "/"
    assert received.header("X-Amz-Target") == "SageMaker.DescribeEndpoint"
    assert received.body == b'{"EndpointName": "my-endpoint"}'
    assert credential.signed_headers == ("content-type", "host", "x-amz-date", "x-amz-target")
    _rejects(
        replace(received, body=b'{"EndpointName": "other-endpoint"}'),
        "InvalidSignatureException",
        MISMATCH,
    )


def test_temporary_credentials_sign_the_session_token() -> None:
    received = _capture("sagemaker", "ListEndpoints", token=TOKEN)
    credential = _verify(received)
    assert "x-amz-security-token" in credential.signed_headers
    assert sigv4.security_token(received.headers) == TOKEN
    _rejects(
        received.with_header("X-Amz-Security-Token", TOKEN + "x"),
        "InvalidSignatureException",
        MISMATCH,
    )


def test_security_token_absent_is_none() -> None:
    assert sigv4.security_token([("Host", "h"), ("X-Amz-Date", AMZ_DATE)]) is None


def test_botocore_encoded_endpoint_name_verifies() -> None:
    received = _capture("sagemaker-runtime", "InvokeEndpoint", EndpointName="e p~x", Body=b"")
    assert received.raw_path == "/endpoints/e%20p~x/invocations"
    _verify(received)


# --- paths and queries --------------------------------------------------------------------


def test_percent_encoded_path_is_encoded_again() -> None:
    received = _sign(f"{URL}/endpoints/e%20p~x/invocations", body=b"{}")
    assert received.raw_path == "/endpoints/e%20p~x/invocations"
    _verify(received)
    assert sigv4.canonical_uri("/endpoints/e%20p~x/invocations") == (
        "/endpoints/e%2520p~x/invocations"
    )


@pytest.mark.parametrize(
    ("raw_path", "canonical"),
    [
        ("", "/"),
        ("/", "/"),
        ("//a//b/", "/a/b/"),
        ("/a/./b/../c", "/a/c"),
        ("/../a", "/a"),
        ("/a/b/..", "/a"),
        ("/a%2Fb", "/a%252Fb"),
        ("/a b+c", "/a%20b%2Bc"),
    ],
)
def test_canonical_uri_normalises_like_botocore(raw_path: str, canonical: str) -> None:
    assert sigv4.canonical_uri(raw_path) == canonical


def test_dot_segments_and_double_slashes_verify() -> None:
    received = _sign(f"{URL}//endpoints/./x/../ep//invocations/")
    assert received.raw_path == "//endpoints/./x/../ep//invocations/"
    _verify(received)


@pytest.mark.parametrize(
    ("query", "canonical"),
    [
        ("", ""),
        ("b=2&a=1", "a=1&b=2"),
        ("a=2&a=1", "a=1&a=2"),
        ("flag&a=", "a=&flag="),
        ("k=x%2Fy&j=a%20b", "j=a%20b&k=x%2Fy"),
        ("k=x/y", "k=x%2Fy"),
        ("k=a=b", "k=a%3Db"),
    ],
)
def test_canonical_query(query: str, canonical: str) -> None:
    assert sigv4.canonical_query(query) == canonical


@pytest.mark.parametrize("query", ["b=2&a=1&c=x%2Fy", "path=a/b&z=", "only"])
def test_query_signed_by_botocore_verifies(query: str) -> None:
    received = _sign(f"{URL}/endpoints/ep/invocations?{query}")
    assert received.query_string == query
    _verify(received)
    _rejects(replace(received, query_string=query + "&x=1"), "InvalidSignatureException", MISMATCH)


# --- JS SDK shape ---------------------------------------------------------------------------


def _js_request(body: bytes, content_sha256: str | None = None) -> Received:
    digest = content_sha256 or hashlib.sha256(body).hexdigest()
    headers = [
        ("amz-sdk-invocation-id", "6f1c1bd4-1f0a-4a55-9a5a-1f7a8c1e1b10"),
        ("amz-sdk-request", "attempt=1; max=3"),
        ("content-length", str(len(body))),
        ("content-type", "application/octet-stream"),
        ("host", "127.0.0.1:8080"),
        ("x-amz-content-sha256", digest),
        ("x-amz-user-agent", "aws-sdk-js/3.1164.0"),
        ("x-amzn-sagemaker-target-variant", "v1"),
    ]
    received = _sign(f"{URL}/endpoints/ep/invocations", headers, body)
    return received.without("User-Agent").plus("user-agent", "aws-sdk-js/3.1164.0 ua/2.1")


def test_js_sdk_style_request_verifies() -> None:
    received = _js_request(b'{"inputs": "hi"}')
    credential = _verify(received)
    assert ";".join(credential.signed_headers) == (
        "amz-sdk-invocation-id;amz-sdk-request;content-length;content-type;host;"
        "x-amz-content-sha256;x-amz-date;x-amz-user-agent;x-amzn-sagemaker-target-variant"
    )


def test_js_sdk_empty_async_body_verifies() -> None:
    _verify(_js_request(b""))


def test_signed_but_wrong_content_sha256_is_rejected() -> None:
    body = b'{"inputs": "hi"}'
    received = _js_request(body, content_sha256=hashlib.sha256(b"other").hexdigest())
    _rejects(
        received,
        "InvalidSignatureException",
        "The x-amz-content-sha256 header does not match the SHA-256 of the body.",
    )


def test_content_sha256_that_is_not_a_hash_is_rejected() -> None:
    received = _js_request(b"x", content_sha256="STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    _rejects(
        received,
        "InvalidSignatureException",
        "x-amz-content-sha256 must be the hex SHA-256 of the request body, "
        "got 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD'.",
    )


def test_unsigned_payload_only_when_allowed() -> None:
    received = _js_request(b"anything", content_sha256="UNSIGNED-PAYLOAD")
    _rejects(
        received,
        "InvalidSignatureException",
        "UNSIGNED-PAYLOAD is not accepted: sign the SHA-256 of the request body.",
    )
    _verify(received, allow_unsigned_payload=True)
    _verify(replace(received, body=b"changed"), allow_unsigned_payload=True)


# --- failures -------------------------------------------------------------------------------


@pytest.fixture
def invoke() -> Received:
    return _sign(
        f"{URL}/endpoints/ep/invocations",
        [("Content-Type", "application/json"), ("X-Amzn-SageMaker-Custom-Attributes", "c=1")],
        b'{"x": 1}',
    )


def test_valid_request_verifies(invoke: Received) -> None:
    _verify(invoke)


def test_wrong_secret(invoke: Received) -> None:
    _rejects(invoke, "InvalidSignatureException", MISMATCH, secret_access_key=SECRET + "x")


def test_tampered_body(invoke: Received) -> None:
    _rejects(replace(invoke, body=b'{"x": 2}'), "InvalidSignatureException", MISMATCH)


def test_tampered_method(invoke: Received) -> None:
    _rejects(replace(invoke, method="PUT"), "InvalidSignatureException", MISMATCH)


def test_tampered_signed_header(invoke: Received) -> None:
    tampered = invoke.with_header("Content-Type", "text/csv")
    _rejects(tampered, "InvalidSignatureException", MISMATCH)


def test_signed_header_removed(invoke: Received) -> None:
    removed = invoke.without("X-Amzn-SageMaker-Custom-Attributes")
    _rejects(removed, "InvalidSignatureException", MISMATCH)


def test_unsigned_header_added_still_verifies(invoke: Received) -> None:
    _verify(invoke.plus("X-Amzn-Trace-Id", "Root=1-abc").plus("Connection", "close"))


def test_signed_header_repeated_is_rejected(invoke: Received) -> None:
    repeated = invoke.plus("Content-Type", "text/csv")
    _rejects(repeated, "InvalidSignatureException", MISMATCH)


def test_header_names_match_in_any_case(invoke: Received) -> None:
    _verify(replace(invoke, headers=[(n.upper(), v) for n, v in invoke.headers]))


def test_stale_signature_message(invoke: Received) -> None:
    _rejects(
        invoke,
        "InvalidSignatureException",
        "Signature expired: 20250102T030405Z is now earlier than 20250102T030406Z "
        "(20250102T031906Z - 15 min.)",
        now=NOW + 901,
    )
    _verify(invoke, now=NOW + 900)


def test_signature_from_the_future_message(invoke: Received) -> None:
    _rejects(
        invoke,
        "InvalidSignatureException",
        "Signature expired: 20250102T030405Z is now later than 20250102T030404Z "
        "(20250102T024904Z + 15 min.)",
        now=NOW - 901,
    )
    _verify(invoke, now=NOW - 900)


def test_skew_window_comes_from_settings(invoke: Received) -> None:
    _rejects(
        invoke,
        "InvalidSignatureException",
        "Signature expired: 20250102T030405Z is now earlier than 20250102T030406Z "
        "(20250102T030906Z - 5 min.)",
        now=NOW + 301,
        max_skew_seconds=300.0,
    )


def test_wrong_service_in_scope() -> None:
    received = _sign(f"{URL}/endpoints/ep/invocations", service="runtime.sagemaker")
    _rejects(
        received,
        "InvalidSignatureException",
        "Credential should be scoped to correct service: 'sagemaker'.",
    )


def test_scope_date_must_match_x_amz_date(invoke: Received) -> None:
    moved = invoke.with_header("X-Amz-Date", "20250103T030405Z")
    _rejects(
        moved,
        "InvalidSignatureException",
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
        "from HTTP: '20250102' != '20250103', from '20250103T030405Z'.",
        now=NOW + 86400,
    )


def test_changed_x_amz_date_within_the_day_fails(invoke: Received) -> None:
    _rejects(
        invoke.with_header("X-Amz-Date", "20250102T030406Z"), "InvalidSignatureException", MISMATCH
    )


@pytest.mark.parametrize("value", ["20250102T030405", "2025-01-02T03:04:05Z", "20251302T030405Z"])
def test_malformed_x_amz_date(invoke: Received, value: str) -> None:
    _rejects(
        invoke.with_header("X-Amz-Date", value),
        "IncompleteSignatureException",
        f"X-Amz-Date must be in the ISO-8601 basic format YYYYMMDD'T'HHMMSS'Z', got '{value}'.",
    )


def test_missing_x_amz_date(invoke: Received) -> None:
    _rejects(
        invoke.without("X-Amz-Date"),
        "IncompleteSignatureException",
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    )


def test_date_header_signed_by_botocore_verifies() -> None:
    received = _sign(f"{URL}/endpoints/ep/invocations", [("Date", "placeholder")], b"{}")
    assert received.header("Date") == "Thu, 02 Jan 2025 03:04:05 -0000"
    assert all(n.lower() != "x-amz-date" for n, _ in received.headers)
    credential = _verify(received)
    assert credential.signed_headers == ("date", "host")
    _rejects(
        received.with_header("Date", "Thu, 02 Jan 2025 03:04:06 GMT"),
        "InvalidSignatureException",
        MISMATCH,
    )


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_authorization(value: str | None) -> None:
    with pytest.raises(SigV4Error) as raised:
        sigv4.parse_authorization(value)
    assert (raised.value.code, raised.value.message) == (
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    )


_GOOD_SIG = "a" * 64
_GOOD_CRED = f"{AKID}/20250102/us-east-1/sagemaker/aws4_request"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            f"AWS {AKID}:abc",
            "Unsupported AWS 'algorithm': 'AWS'. Only 'AWS4-HMAC-SHA256' is accepted.",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={_GOOD_CRED}, SignedHeaders=host",
            "Authorization header requires 'Signature' parameter. "
            f"Authorization=AWS4-HMAC-SHA256 Credential={_GOOD_CRED}, SignedHeaders=host",
        ),
        (
            "AWS4-HMAC-SHA256 garbage",
            "Authorization header requires 'Credential' parameter. "
            "Authorization header requires 'Signature' parameter. "
            "Authorization header requires 'SignedHeaders' parameter. "
            "Authorization=AWS4-HMAC-SHA256 garbage",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={AKID}/20250102/us-east-1/sagemaker, "
            f"SignedHeaders=host, Signature={_GOOD_SIG}",
            "Credential must have exactly 5 slash-delimited elements, "
            f"e.g. keyid/date/region/service/term, got '{AKID}/20250102/us-east-1/sagemaker'",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={AKID}/2025-1-2/us-east-1/sagemaker/aws4_request, "
            f"SignedHeaders=host, Signature={_GOOD_SIG}",
            "Credential date must be in the format yyyyMMdd, got '2025-1-2'.",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={AKID}/20250102/us-east-1/sagemaker/aws5_request, "
            f"SignedHeaders=host, Signature={_GOOD_SIG}",
            "Credential should be scoped with a valid terminator: 'aws4_request', "
            "not 'aws5_request'.",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={_GOOD_CRED}, SignedHeaders=x-amz-date, "
            f"Signature={_GOOD_SIG}",
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={_GOOD_CRED}, SignedHeaders=host;;x-amz-date, "
            f"Signature={_GOOD_SIG}",
            "SignedHeaders has an empty name. "
            f"Authorization=AWS4-HMAC-SHA256 Credential={_GOOD_CRED}, "
            f"SignedHeaders=host;;x-amz-date, Signature={_GOOD_SIG}",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={_GOOD_CRED}, SignedHeaders=host, Signature=xyz",
            "Signature must be 64 hexadecimal characters. "
            f"Authorization=AWS4-HMAC-SHA256 Credential={_GOOD_CRED}, "
            "SignedHeaders=host, Signature=xyz",
        ),
    ],
)
def test_malformed_authorization(header: str, message: str) -> None:
    with pytest.raises(SigV4Error) as raised:
        sigv4.parse_authorization(header)
    assert (raised.value.code, raised.value.message) == ("IncompleteSignatureException", message)


def test_parse_authorization_accepts_any_spacing_and_order() -> None:
    sig = "AB" * 32
    credential = sigv4.parse_authorization(
        f"  AWS4-HMAC-SHA256 Signature={sig},SignedHeaders=host;x-amz-date ,"
        f"  Credential={_GOOD_CRED}  "
    )
    assert credential == Credential(
        AKID, "20250102", "us-east-1", "sagemaker", ("host", "x-amz-date"), "ab" * 32
    )
    assert credential.scope == "20250102/us-east-1/sagemaker/aws4_request"


def test_exact_and_loosely_spaced_authorization_parse_alike() -> None:
    header = _js_request(b"{}").header("Authorization")
    loose = header.replace(", ", " ,  ").replace("Signature=", "Signature=  ")
    assert loose != header
    assert sigv4.parse_authorization(loose) == sigv4.parse_authorization(header)


# --- canonical form details --------------------------------------------------------------


def test_header_whitespace_folding(invoke: Received) -> None:
    received = _sign(
        f"{URL}/endpoints/ep/invocations",
        [
            ("X-Amzn-SageMaker-Custom-Attributes", "  a   b  "),
            ("X-Multi", " x "),
            ("X-Multi", "y  z"),
        ],
    )
    credential = _verify(received)
    text = sigv4.canonical_request(
        method="POST",
        raw_path=received.raw_path,
        query_string="",
        headers=received.headers,
        signed_headers=credential.signed_headers,
        payload_hash=sigv4.EMPTY_SHA256,
    )
    assert text == (
        "POST\n/endpoints/ep/invocations\n\n"
        "host:127.0.0.1:8080\n"
        "x-amz-date:20250102T030405Z\n"
        "x-amzn-sagemaker-custom-attributes:a b\n"
        "x-multi:x,y z\n\n"
        "host;x-amz-date;x-amzn-sagemaker-custom-attributes;x-multi\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    # Folding is part of the canonical form, so differently spaced values are the same signature.
    _verify(received.with_header("X-Amzn-SageMaker-Custom-Attributes", "a b"))


def test_string_to_sign_and_signing_key_match_published_example() -> None:
    # The key-derivation example from the AWS SigV4 documentation (IAM, 2012-02-15).
    key = sigv4.signing_key(SECRET, "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
    assert sigv4.string_to_sign(amz_date=AMZ_DATE, scope="s", canonical_request="") == (
        "AWS4-HMAC-SHA256\n20250102T030405Z\ns\n" + sigv4.EMPTY_SHA256
    )


def test_signing_key_cache_is_bounded_and_reused(invoke: Received) -> None:
    _verify(invoke)
    _verify(invoke)
    info = sigv4._keyed_hmac.cache_info()
    assert (info.hits, info.misses, info.maxsize) == (1, 1, 256)


# --- property: botocore-signed requests always verify ---------------------------------------

_segment = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12
)
_header_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
_header_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=15)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.binary(max_size=256),
    segments=st.lists(_segment, min_size=1, max_size=4),
    values=st.dictionaries(_header_name.map(lambda n: f"x-amzn-sagemaker-{n}"), _header_value),
    flip=st.integers(min_value=0, max_value=255),
    flip_byte=st.integers(min_value=1, max_value=255),
)
def test_botocore_signed_requests_verify_and_body_changes_do_not(
    body: bytes, segments: list[str], values: dict[str, str], flip: int, flip_byte: int
) -> None:
    path = "/" + "/".join(quote(s, safe="~") for s in segments)
    received = _sign(f"{URL}{path}", sorted(values.items()), body)
    _verify(received)
    if body:
        i = flip % len(body)
        changed = body[:i] + bytes([body[i] ^ flip_byte]) + body[i + 1 :]
    else:
        changed = bytes([flip_byte])
    _rejects(replace(received, body=changed), "InvalidSignatureException", MISMATCH)
