"""AWS Signature Version 4 verification for incoming requests (spec §2).

Pure: the caller passes the request as received, the secret it looked up for the access key
and the current time, so this module can be fuzzed and checked against botocore's signer.

Errors are :class:`SigV4Error` with the AWS JSON-protocol code the client must see (all 403):

- ``MissingAuthenticationTokenException``: no ``Authorization`` header.
- ``IncompleteSignatureException``: the ``Authorization`` header, ``X-Amz-Date`` or ``Date``
  cannot be parsed, or ``host`` is not signed.
- ``InvalidSignatureException``: everything else: wrong scope, clock skew (message starts with
  ``Signature expired``, which the JS SDK retries after fixing its clock), an
  ``x-amz-content-sha256`` that is not the body's hash, and signature mismatch.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from urllib.parse import quote, unquote

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "SERVICE",
    "UNSIGNED_PAYLOAD",
    "Credential",
    "SigV4Error",
    "canonical_query",
    "canonical_request",
    "canonical_uri",
    "parse_authorization",
    "security_token",
    "signing_key",
    "string_to_sign",
    "verify",
]

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "sagemaker"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

MISSING_AUTH = "MissingAuthenticationTokenException"
INCOMPLETE = "IncompleteSignatureException"
INVALID = "InvalidSignatureException"

MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)

_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AMZ_DATE_RE = re.compile(r"(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z")
# botocore writes Date with email.utils.formatdate, which ends in "-0000", not "GMT".
_HTTP_DATE_RE = re.compile(
    r"(?:[A-Za-z]{3}, )?(\d{1,2}) ([A-Za-z]{3}) (\d{4}) (\d\d):(\d\d):(\d\d) (?:GMT|UTC|[+-]0000)"
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
# The exact form botocore and the JS SDK send; anything else takes the slower, lenient path.
_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/\s,]+)/(\d{8})/([^/\s,]+)/([^/\s,]+)/aws4_request, "
    r"SignedHeaders=([^;\s,]+(?:;[^;\s,]+)*), Signature=([0-9a-f]{64})"
)
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}")
_DATE8_RE = re.compile(r"\d{8}")
# Headers verify() reads whether or not they are signed.
_CONTROL_HEADERS = frozenset(("x-amz-date", "date", "x-amz-content-sha256"))


class SigV4Error(Exception):
    """Authentication failed. ``code`` is the AWS error code, ``message`` the text to send."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Credential:
    """The parts of an ``Authorization: AWS4-HMAC-SHA256 …`` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


def parse_authorization(value: str | None) -> Credential:
    """Parse an ``Authorization`` header; raise :class:`SigV4Error` if absent or malformed."""
    if not value or not value.strip():
        raise SigV4Error(MISSING_AUTH, "Missing Authentication Token")
    match = _AUTH_RE.fullmatch(value)
    if match is not None:
        akid, date, region, service, signed, signature = match.groups()
        names = tuple(signed.split(";"))
        if "host" in names:
            return Credential(akid, date, region, service, names, signature)
    return _parse_loosely(value)


def _parse_loosely(value: str) -> Credential:
    """Any spacing and parameter order, with an AWS-style message for what is wrong."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SigV4Error(
            INCOMPLETE,
            f"Unsupported AWS 'algorithm': '{algorithm}'. Only '{ALGORITHM}' is accepted.",
        )
    params: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, val = part.strip().partition("=")
        if sep:
            params[key] = val.strip()
    missing = [k for k in ("Credential", "Signature", "SignedHeaders") if not params.get(k)]
    if missing:
        text = " ".join(f"Authorization header requires '{k}' parameter." for k in missing)
        raise SigV4Error(INCOMPLETE, f"{text} Authorization={value}")

    raw_credential = params["Credential"]
    parts = raw_credential.split("/")
    if len(parts) != 5 or not all(parts):
        raise SigV4Error(
            INCOMPLETE,
            "Credential must have exactly 5 slash-delimited elements, "
            f"e.g. keyid/date/region/service/term, got '{raw_credential}'",
        )
    akid, date, region, service, terminator = parts
    if not _DATE8_RE.fullmatch(date):
        raise SigV4Error(
            INCOMPLETE, f"Credential date must be in the format yyyyMMdd, got '{date}'."
        )
    if terminator != TERMINATOR:
        raise SigV4Error(
            INCOMPLETE,
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
            f"not '{terminator}'.",
        )

    signed = tuple(params["SignedHeaders"].split(";"))
    if not all(signed):
        raise SigV4Error(INCOMPLETE, f"SignedHeaders has an empty name. Authorization={value}")
    # AWS insists on a signed host so a request cannot be replayed against another endpoint.
    if not any(name.lower() == "host" for name in signed):
        raise SigV4Error(
            INCOMPLETE, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )

    signature = params["Signature"]
    if not _HEX64_RE.fullmatch(signature):
        raise SigV4Error(
            INCOMPLETE, f"Signature must be 64 hexadecimal characters. Authorization={value}"
        )
    return Credential(akid, date, region, service, signed, signature.lower())


def security_token(headers: Iterable[tuple[str, str]]) -> str | None:
    """The ``X-Amz-Security-Token`` as it was signed (repeats joined with ``,``), or None."""
    values = [v for n, v in headers if n.lower() == "x-amz-security-token"]
    return _fold(values) if values else None


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """kSigning: the HMAC chain over the scope, keyed by ``"AWS4" + secret``."""
    key = hmac.digest(f"AWS4{secret_access_key}".encode(), date.encode(), "sha256")
    for part in (region, service, TERMINATOR):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


@lru_cache(maxsize=256)
def _keyed_hmac(secret_access_key: str, date: str, region: str, service: str) -> hmac.HMAC:
    """An HMAC-SHA256 object keyed with kSigning, to be copied per request.

    Caching it saves the four-HMAC key derivation, and ``copy()`` of a keyed object skips the
    key set-up, which costs more than the hashing for a short string to sign.
    """
    return hmac.new(signing_key(secret_access_key, date, region, service), digestmod=hashlib.sha256)


def canonical_uri(raw_path: str) -> str:
    """The path as received, normalised as botocore does, then percent-encoded a second time."""
    if not raw_path:
        return "/"
    if "//" in raw_path or "/." in raw_path or raw_path[0] != "/":
        raw_path = _remove_dot_segments(raw_path)
    # surrogateescape lets a path decoded with it round-trip to its original bytes.
    return quote(raw_path, safe="/~", errors="surrogateescape")


def canonical_query(query_string: str) -> str:
    """The query as AWS canonicalises it: each key and value URI-encoded once, pairs sorted.

    Decoding first makes an already-encoded query (what botocore and the JS SDK send) come out
    unchanged, and a loosely encoded one (``a=b/c``) come out as the spec requires.
    """
    if not query_string:
        return ""
    pairs = []
    for pair in query_string.split("&"):
        key, _, value = pair.partition("=")
        pairs.append((_query_encode(key), _query_encode(value)))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_request(
    *,
    method: str,
    raw_path: str,
    query_string: str,
    headers: Sequence[tuple[str, str]],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    """The canonical request; a signed header missing from ``headers`` raises KeyError."""
    found = _collect(headers, {name.lower() for name in signed_headers})
    uri = canonical_uri(raw_path)
    query = canonical_query(query_string)
    return _canonical_request(method, uri, query, found, signed_headers, payload_hash)


def string_to_sign(*, amz_date: str, scope: str, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode()).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def verify(
    *,
    method: str,
    raw_path: str,
    query_string: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    credential: Credential,
    secret_access_key: str,
    now: float,
    max_skew_seconds: float = 900.0,
    allow_unsigned_payload: bool = False,
) -> None:
    """Raise :class:`SigV4Error` unless the request carries a valid signature by this secret.

    ``raw_path`` and ``query_string`` are as received, still percent-encoded (decode the raw
    bytes as UTF-8 with ``surrogateescape``). ``headers`` are as received, in order, with
    values decoded as latin-1, which is how botocore's HTTP stack encodes them.
    """
    if credential.service != SERVICE:
        raise SigV4Error(INVALID, f"Credential should be scoped to correct service: '{SERVICE}'.")
    found = _collect(headers, _wanted(credential.signed_headers))

    amz_date, signed_at = _request_date(found)
    if credential.date != amz_date[:8]:
        raise SigV4Error(
            INVALID,
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{credential.date}' != '{amz_date[:8]}', from '{amz_date}'.",
        )
    _check_clock(amz_date, signed_at, now, max_skew_seconds)
    payload_hash = _payload_hash(found, body, allow_unsigned_payload)

    if any(name.lower() not in found for name in credential.signed_headers):
        raise SigV4Error(INVALID, MISMATCH_MESSAGE)
    pads = _keyed_hmac(secret_access_key, credential.date, credential.region, credential.service)
    uri = canonical_uri(raw_path)
    query = canonical_query(query_string)
    if _matches(pads, credential, amz_date, method, uri, query, found, payload_hash):
        return
    # botocore signs a query taken from the URL without re-encoding it; accept that form too.
    raw_query = _sorted_raw_query(query_string)
    if raw_query != query and _matches(
        pads, credential, amz_date, method, uri, raw_query, found, payload_hash
    ):
        return
    raise SigV4Error(INVALID, MISMATCH_MESSAGE)


def _matches(
    pads: hmac.HMAC,
    credential: Credential,
    amz_date: str,
    method: str,
    uri: str,
    query: str,
    found: dict[str, list[str]],
    payload_hash: str,
) -> bool:
    creq = _canonical_request(method, uri, query, found, credential.signed_headers, payload_hash)
    sts = string_to_sign(amz_date=amz_date, scope=credential.scope, canonical_request=creq)
    mac = pads.copy()
    mac.update(sts.encode())
    expected = mac.hexdigest()
    return hmac.compare_digest(expected, credential.signature)


def _canonical_request(
    method: str,
    uri: str,
    query: str,
    found: dict[str, list[str]],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    lines = [method.upper(), uri, query]
    for name in signed_headers:
        lines.append(f"{name}:{_fold(found[name.lower()])}")
    lines.append("")
    lines.append(";".join(signed_headers))
    lines.append(payload_hash)
    return "\n".join(lines)


@lru_cache(maxsize=64)
def _wanted(signed_headers: tuple[str, ...]) -> frozenset[str]:
    """The header names verify() must read; clients send a handful of distinct signed sets."""
    return _CONTROL_HEADERS.union(name.lower() for name in signed_headers)


def _collect(headers: Iterable[tuple[str, str]], wanted: Set[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in headers:
        lname = name.lower()
        if lname in wanted:
            values = found.get(lname)
            if values is None:
                found[lname] = [value]
            else:
                values.append(value)
    return found


def _fold(values: list[str]) -> str:
    # str.split() with no argument is botocore's definition of whitespace here.
    if len(values) == 1:
        return " ".join(values[0].split())
    return ",".join(" ".join(v.split()) for v in values)


def _request_date(found: dict[str, list[str]]) -> tuple[str, float]:
    """The signing time as ``YYYYMMDD'T'HHMMSS'Z'`` and as epoch seconds.

    X-Amz-Date wins; botocore sends an RFC 1123 Date instead only when the caller set one.
    """
    values = found.get("x-amz-date")
    if values is not None:
        amz_date = _fold(values)
        epoch = _amz_epoch(amz_date)
        if epoch is None:
            raise SigV4Error(
                INCOMPLETE,
                "X-Amz-Date must be in the ISO-8601 basic format YYYYMMDD'T'HHMMSS'Z', "
                f"got '{amz_date}'.",
            )
        return amz_date, epoch
    values = found.get("date")
    if values is None:
        raise SigV4Error(
            INCOMPLETE,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    http_date = _fold(values)
    when = None
    match = _HTTP_DATE_RE.fullmatch(http_date)
    if match:
        day, month, year, hour, minute, second = match.groups()
        if month.lower() in _MONTHS:
            when = _utc(
                int(year), _MONTHS[month.lower()], int(day), int(hour), int(minute), int(second)
            )
    if when is None:
        raise SigV4Error(INCOMPLETE, f"Date must be an RFC 1123 date, got '{http_date}'.")
    return when.strftime(_AMZ_DATE_FORMAT), when.timestamp()


@lru_cache(maxsize=128)
def _amz_epoch(amz_date: str) -> float | None:
    # Concurrent requests share their X-Amz-Date second, so this is nearly always a hit.
    match = _AMZ_DATE_RE.fullmatch(amz_date)
    when = _utc(*map(int, match.groups())) if match else None
    return None if when is None else when.timestamp()


def _utc(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime | None:
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None


def _check_clock(amz_date: str, signed_at: float, now: float, max_skew_seconds: float) -> None:
    if abs(signed_at - now) <= max_skew_seconds:
        return
    minutes = f"{max_skew_seconds / 60:g}"
    if signed_at < now:
        bound, relation, sign = now - max_skew_seconds, "earlier", "-"
    else:
        bound, relation, sign = now + max_skew_seconds, "later", "+"
    raise SigV4Error(
        INVALID,
        f"Signature expired: {amz_date} is now {relation} than {_amz(bound)} "
        f"({_amz(now)} {sign} {minutes} min.)",
    )


def _amz(epoch: float) -> str:
    return time.strftime(_AMZ_DATE_FORMAT, time.gmtime(epoch))


def _payload_hash(found: dict[str, list[str]], body: bytes, allow_unsigned: bool) -> str:
    values = found.get("x-amz-content-sha256")
    if values is None:
        return hashlib.sha256(body).hexdigest()
    # Used verbatim in the canonical request, as botocore and the JS SDK do.
    claimed = _fold(values)
    if claimed == UNSIGNED_PAYLOAD:
        if allow_unsigned:
            return claimed
        raise SigV4Error(
            INVALID, "UNSIGNED-PAYLOAD is not accepted: sign the SHA-256 of the request body."
        )
    if not _HEX64_RE.fullmatch(claimed):
        raise SigV4Error(
            INVALID,
            f"x-amz-content-sha256 must be the hex SHA-256 of the request body, got '{claimed}'.",
        )
    if claimed.lower() != hashlib.sha256(body).hexdigest():
        raise SigV4Error(
            INVALID, "The x-amz-content-sha256 header does not match the SHA-256 of the body."
        )
    return claimed


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 dot-segment removal plus collapsing ``//``, exactly as botocore signs paths."""
    segments: list[str] = []
    for segment in path.split("/"):
        if not segment or segment == ".":
            continue
        if segment == "..":
            if segments:
                segments.pop()
        else:
            segments.append(segment)
    first = "/" if path[0] == "/" else ""
    last = "/" if path[-1] == "/" and segments else ""
    return first + "/".join(segments) + last


def _query_encode(text: str) -> str:
    return quote(unquote(text, errors="surrogateescape"), safe="-_.~", errors="surrogateescape")


def _sorted_raw_query(query_string: str) -> str:
    if not query_string:
        return ""
    pairs = sorted(pair.partition("=")[::2] for pair in query_string.split("&"))
    return "&".join(f"{k}={v}" for k, v in pairs)
