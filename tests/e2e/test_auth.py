"""SigV4 failures and account isolation, seen through real clients."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from sagehost.testing.server import RunningServer, free_port, write_credentials
from tests.e2e.conftest import deploy, unique

ACCOUNT_A = "111111111111"
ACCOUNT_B = "222222222222"
UNRECOGNIZED_MESSAGE = "The security token included in the request is invalid."
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("accounts")
    credentials = write_credentials(
        root / "credentials.toml",
        (ACCOUNT_A, "AKIDA", "secret-a"),
        (ACCOUNT_B, "AKIDB", "secret-b", "token-b"),
    )
    running = RunningServer(
        data_dir=root / "data", port=free_port(), args=["--credentials", str(credentials)]
    )
    running.start()
    yield running
    running.stop()


def client(
    server: RunningServer, service: str, key: str, secret: str, token: str | None = None
) -> Any:
    return server.client(service, key=key, secret=secret, token=token, region="eu-west-1")


def signed(
    server: RunningServer, body: bytes, secret: str = "secret-a", key: str = "AKIDA"
) -> AWSRequest:
    request = AWSRequest(
        method="POST",
        url=f"{server.url}/",
        data=body,
        headers={
            "X-Amz-Target": "SageMaker.ListEndpoints",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    SigV4Auth(Credentials(key, secret), "sagemaker", "eu-west-1").add_auth(request)
    return request


def send(
    server: RunningServer, request: AWSRequest, body: bytes | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    raw = urllib.request.Request(
        request.url,
        data=request.body if body is None else body,
        headers=dict(request.headers.items()),
        method="POST",
    )
    try:
        with urllib.request.urlopen(raw, timeout=10) as reply:
            return (
                reply.status,
                json.loads(reply.read()),
                {k.lower(): v for k, v in reply.headers.items()},
            )
    except urllib.error.HTTPError as error:
        return (
            error.code,
            json.loads(error.read()),
            {k.lower(): v for k, v in error.headers.items()},
        )


def test_accounts_are_isolated(multi: RunningServer) -> None:
    sm_a = client(multi, "sagemaker", "AKIDA", "secret-a")
    rt_a = client(multi, "sagemaker-runtime", "AKIDA", "secret-a")
    sm_b = client(multi, "sagemaker", "AKIDB", "secret-b", "token-b")
    rt_b = client(multi, "sagemaker-runtime", "AKIDB", "secret-b", "token-b")
    name = unique("mine")
    description = deploy(sm_a, name)
    assert description["EndpointArn"] == f"arn:aws:sagemaker:eu-west-1:{ACCOUNT_A}:endpoint/{name}"
    assert rt_a.invoke_endpoint(EndpointName=name, Body=b"hello")["Body"].read() == b"hello"
    with pytest.raises(rt_b.exceptions.ValidationError) as error:
        rt_b.invoke_endpoint(EndpointName=name, Body=b"hello")
    assert (
        error.value.response["Error"]["Message"]
        == f"Endpoint {name} of account {ACCOUNT_B} not found."
    )
    assert sm_b.list_endpoints()["Endpoints"] == []
    assert sm_b.list_models()["Models"] == []
    with pytest.raises(ClientError) as described:
        sm_b.describe_endpoint(EndpointName=name)
    assert described.value.response["Error"]["Code"] == "ValidationException"
    # Account B may use the same names without clashing with account A.
    sm_b.create_model(ModelName=name, PrimaryContainer={"Image": "sagehost/python"})
    with pytest.raises(ClientError):
        sm_b.add_tags(ResourceArn=description["EndpointArn"], Tags=[{"Key": "k", "Value": "v"}])


def test_wrong_secret(multi: RunningServer) -> None:
    with pytest.raises(ClientError) as error:
        client(multi, "sagemaker", "AKIDA", "not-the-secret").list_endpoints()
    assert error.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert error.value.response["Error"]["Message"] == MISMATCH
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_unknown_key_and_dev_key_refused_with_credentials_file(multi: RunningServer) -> None:
    for key, secret in (("AKIDX", "x"), ("test", "test")):
        with pytest.raises(ClientError) as error:
            client(multi, "sagemaker-runtime", key, secret).invoke_endpoint(
                EndpointName="e", Body=b"x"
            )
        assert error.value.response["Error"]["Code"] == "UnrecognizedClientException"
        assert (
            error.value.response["Error"]["Message"]
            == "The security token included in the request is invalid."
        )


def test_session_token_must_match(multi: RunningServer) -> None:
    with pytest.raises(ClientError) as error:
        client(multi, "sagemaker", "AKIDB", "secret-b", "wrong-token").list_endpoints()
    assert error.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert (
        client(multi, "sagemaker", "AKIDB", "secret-b", "token-b").list_endpoints()["Endpoints"]
        is not None
    )


def test_tampered_body(multi: RunningServer) -> None:
    query = b'{"NameContains": "no-such-endpoint"}'
    request = signed(multi, query)
    status, body, _ = send(multi, request, body=b'{"NameContains": "no-such-endpoinT"}')
    assert status == 403
    assert body["__type"] == "InvalidSignatureException"
    assert body["Message"] == MISMATCH
    status, body, headers = send(multi, signed(multi, query))
    assert status == 200
    assert body == {"Endpoints": []}
    assert headers["content-type"] == "application/x-amz-json-1.1"


def test_missing_authorization(multi: RunningServer) -> None:
    request = urllib.request.Request(
        f"{multi.url}/endpoints/e/invocations", data=b"x", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=10)
    assert error.value.code == 403
    assert error.value.headers["X-Amzn-ErrorType"] == "MissingAuthenticationTokenException"
    assert json.loads(error.value.read())["Message"] == "Missing Authentication Token"


@pytest.mark.parametrize("minutes", [-20, 20])
def test_stale_or_future_date(
    multi: RunningServer, monkeypatch: pytest.MonkeyPatch, minutes: int
) -> None:
    skewed = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + datetime.timedelta(
        minutes=minutes
    )

    # The client's clock is wrong, not the server's: patch botocore's signer only.
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: skewed)
    status, body, headers = send(multi, signed(multi, b"{}"))
    assert status == 403
    assert body["__type"] == "InvalidSignatureException"
    word = "earlier" if minutes < 0 else "later"
    assert body["Message"].startswith(
        f"Signature expired: {skewed.strftime('%Y%m%dT%H%M%SZ')} is now {word} than "
    )
    assert body["Message"].endswith("15 min.)")
    assert "date" in headers


def test_non_loopback_host_without_credentials_refuses_to_start(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sagehost",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without --credentials" in result.stderr


@pytest.mark.parametrize(
    "header",
    [
        ("X-Forwarded-For", "203.0.113.9"),
        ("Forwarded", "for=203.0.113.9"),
        ("X-Real-IP", "203.0.113.9"),
    ],
)
def test_dev_key_refused_through_a_proxy(server: RunningServer, header: tuple[str, str]) -> None:
    """A local reverse proxy connects from loopback; its forwarding header says the caller is not."""
    dev = client(server, "sagemaker", "test", "test")
    assert dev.list_endpoints()["Endpoints"] is not None

    def add_header(request: AWSRequest, **_: Any) -> None:
        request.headers[header[0]] = header[1]  # added after signing, as a proxy would

    dev.meta.events.register("before-send.sagemaker.ListEndpoints", add_header)
    with pytest.raises(ClientError) as error:
        dev.list_endpoints()
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert error.value.response["Error"]["Message"] == UNRECOGNIZED_MESSAGE
