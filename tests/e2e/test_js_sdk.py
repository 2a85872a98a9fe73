"""The JavaScript SDK v3 as an independent client: streaming and plain invocations from Node.

Each test runs one of the scripts in ``tests/js`` against a live server and asserts on the one
JSON line it prints. ``scripts/install`` installs the pinned SDK (``npm ci --prefix tests/js``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sagehost.testing.server import RunningServer
from tests.e2e.conftest import MODELS, deploy, unique

ACCOUNT = "000000000000"
JS = Path(__file__).resolve().parent.parent / "js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed (Node 20 is needed)")


@pytest.fixture(scope="module")
def endpoint(sm: Any) -> str:
    if not (JS / "node_modules" / "@aws-sdk" / "client-sagemaker-runtime").is_dir():
        pytest.fail("the JS SDK is not installed: run scripts/install (npm ci --prefix tests/js)")
    name = unique("js-stream")
    deploy(sm, name, model_dir=MODELS / "streamer")
    return name


def node(script: str, server: RunningServer, endpoint: str, body: Any, *flags: str) -> Any:
    """Run ``tests/js/<script>`` and return the JSON line it printed."""
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(JS / script), server.url, endpoint, json.dumps(body), *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        # The SDK warns on stderr that its 2027 releases need Node 22; keep stderr for real errors.
        env={**os.environ, "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true"},
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}: {done.stderr}"
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    return json.loads(lines[0])


def tokens(count: int, prefix: str = "tok") -> list[str]:
    return [f"{prefix}{i} " for i in range(count)]


def test_stream_delivers_every_part_in_order(server: RunningServer, endpoint: str) -> None:
    result = node(
        "stream.mjs", server, endpoint, {"count": 20, "content_type": "text/event-stream"}
    )
    assert result["error"] is None
    assert result["httpStatusCode"] == 200
    assert result["parts"] == tokens(20)
    assert result["contentType"] == "text/event-stream"
    assert result["variant"] == "AllTraffic"
    assert result["customAttributes"] is None
    assert len(result["requestId"]) == 36


def test_stream_accept_reaches_the_container(server: RunningServer, endpoint: str) -> None:
    # Without its own content type the runtime answers with the accept type, which the SDK
    # sends as X-Amzn-SageMaker-Accept.
    result = node(
        "stream.mjs",
        server,
        endpoint,
        {"count": 2, "prefix": "ß→"},
        "--input=" + json.dumps({"Accept": "text/x-tokens"}),
    )
    assert result["error"] is None
    assert result["parts"] == ["ß→0 ", "ß→1 "]
    assert result["contentType"] == "text/x-tokens"


def test_first_part_arrives_while_the_model_still_produces(
    server: RunningServer, endpoint: str, tmp_path: Path
) -> None:
    # The model holds every item after the first until the client has received the first
    # part: a server that buffered the stream would deadlock until the model gives up (10 s).
    gate = tmp_path / "gate"
    result = node(
        "stream.mjs",
        server,
        endpoint,
        {"count": 5, "gate": str(gate)},
        f"--touch-on-first-part={gate}",
    )
    assert result["error"] is None
    assert result["parts"] == tokens(5)
    assert gate.exists()


def test_empty_stream_has_no_parts(server: RunningServer, endpoint: str) -> None:
    accept = "--input=" + json.dumps({"Accept": "text/plain"})
    result = node("stream.mjs", server, endpoint, {"count": 0}, accept)
    assert result["error"] is None
    assert result["httpStatusCode"] == 200
    assert result["parts"] == []
    assert result["contentType"] == "text/plain"
    assert result["variant"] == "AllTraffic"


def test_mid_stream_failure_is_model_stream_error(server: RunningServer, endpoint: str) -> None:
    result = node("stream.mjs", server, endpoint, {"count": 10, "fail_after": 3})
    assert result["httpStatusCode"] == 200
    assert result["parts"] == tokens(3)
    error = result["error"]
    assert error["during"] == "stream"
    assert error["name"] == "ModelStreamError"
    assert error["ErrorCode"] == "StreamBroken"
    assert error["Message"].startswith("The response stream from container primary broke")
    assert error["message"] == error["Message"]


def test_error_before_first_byte_is_thrown_by_send(server: RunningServer, endpoint: str) -> None:
    result = node("stream.mjs", server, endpoint, {"status": 418})
    assert result["parts"] == []
    assert result["contentType"] is None
    error = result["error"]
    assert error["during"] == "send"
    assert error["name"] == "ModelError"
    assert error["httpStatusCode"] == 424
    assert error["OriginalStatusCode"] == 418
    assert error["OriginalMessage"] == "custom status 418"
    assert error["message"].startswith(
        'Received client error (418) from primary with message "custom status 418".'
    )
    assert error["LogStreamArn"] == (
        f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{endpoint}"
    )


def test_failure_before_any_item_is_a_server_model_error(
    server: RunningServer, endpoint: str
) -> None:
    result = node("stream.mjs", server, endpoint, {"count": 5, "fail_after": 0})
    assert result["parts"] == []
    error = result["error"]
    assert error["during"] == "send"
    assert error["name"] == "ModelError"
    assert error["httpStatusCode"] == 424
    assert error["OriginalStatusCode"] == 500
    assert error["OriginalMessage"] == "boom"
    assert error["message"].startswith(
        'Received server error (500) from primary with message "boom"'
    )


def test_stream_to_unknown_endpoint_is_validation_error(server: RunningServer) -> None:
    result = node("stream.mjs", server, "does-not-exist", {"count": 1})
    error = result["error"]
    assert error["during"] == "send"
    assert error["name"] == "ValidationError"
    assert error["httpStatusCode"] == 400
    assert error["message"] == f"Endpoint does-not-exist of account {ACCOUNT} not found."
    assert result["parts"] == []


def test_invoke_joins_the_streamed_items(server: RunningServer, endpoint: str) -> None:
    result = node(
        "invoke.mjs", server, endpoint, {"count": 4, "content_type": "text/plain; charset=utf-8"}
    )
    assert result["error"] is None
    assert result["httpStatusCode"] == 200
    assert result["body"] == "tok0 tok1 tok2 tok3 "
    assert result["contentType"] == "text/plain; charset=utf-8"
    assert result["variant"] == "AllTraffic"
    assert len(result["requestId"]) == 36


def test_invoke_of_an_empty_stream_is_an_empty_body(server: RunningServer, endpoint: str) -> None:
    accept = "--input=" + json.dumps({"Accept": "text/plain"})
    result = node("invoke.mjs", server, endpoint, {"count": 0}, accept)
    assert result["error"] is None
    assert result["body"] == ""
    assert result["contentType"] == "text/plain"
    assert result["variant"] == "AllTraffic"


def test_invoke_model_error_and_unknown_endpoint(server: RunningServer, endpoint: str) -> None:
    result = node("invoke.mjs", server, endpoint, {"status": 418})
    error = result["error"]
    assert result["body"] is None
    assert error["name"] == "ModelError"
    assert error["httpStatusCode"] == 424
    assert error["OriginalStatusCode"] == 418
    assert error["OriginalMessage"] == "custom status 418"

    result = node("invoke.mjs", server, "does-not-exist", {})
    error = result["error"]
    assert error["name"] == "ValidationError"
    assert error["httpStatusCode"] == 400
    assert error["message"] == f"Endpoint does-not-exist of account {ACCOUNT} not found."


def test_invoke_mid_stream_failure_is_not_a_truncated_success(
    server: RunningServer, endpoint: str
) -> None:
    result = node("invoke.mjs", server, endpoint, {"count": 5, "fail_after": 2})
    # The container's 200 is already out when it breaks, so there is no status to report: 0.
    assert result["body"] is None
    error = result["error"]
    assert error["name"] == "ModelError"
    assert error["httpStatusCode"] == 424
    assert error["OriginalStatusCode"] == 0
    assert error["message"].startswith("Received server error (0) from primary with message")
