"""InvokeEndpointWithResponseStream through boto3 (and raw HTTP where botocore hides fields)."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import EventStreamError

from sagehost.testing.server import RunningServer, free_port
from tests.e2e.conftest import MODELS, deploy, unique

STREAMER = MODELS / "streamer"


@pytest.fixture(scope="module")
def streamer(sm: Any) -> str:
    name = unique("stream")
    deploy(sm, name, model_dir=STREAMER)
    return name


def stream(rt: Any, name: str, request: dict[str, Any], **extra: Any) -> Any:
    return rt.invoke_endpoint_with_response_stream(
        EndpointName=name, Body=json.dumps(request), ContentType="application/json", **extra
    )


def parts(response: Any) -> list[bytes]:
    return [event["PayloadPart"]["Bytes"] for event in response["Body"]]


def raw_stream(
    server: RunningServer, name: str, request: dict[str, Any]
) -> tuple[int, dict[str, str], list[Any]]:
    """POST signed by botocore, read with http.client, frames decoded by botocore's decoder."""
    body = json.dumps(request).encode()
    signed = AWSRequest(
        method="POST",
        url=f"{server.url}/endpoints/{name}/invocations-response-stream",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials("test", "test"), "sagemaker", "us-east-1").add_auth(signed)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request(
        "POST", f"/endpoints/{name}/invocations-response-stream", body, dict(signed.headers.items())
    )
    response = connection.getresponse()
    assert response.status == 200, response.read()
    headers = {k.lower(): v for k, v in response.getheaders()}
    buffer = EventStreamBuffer()
    buffer.add_data(response.read())
    connection.close()
    return response.status, headers, list(buffer)


def test_parts_arrive_exactly_and_in_order(rt: Any, streamer: str) -> None:
    response = stream(rt, streamer, {"count": 50, "content_type": "text/plain"})
    assert response["ContentType"] == "text/plain"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert parts(response) == [f"tok{i} ".encode() for i in range(50)]


def test_wire_framing(server: RunningServer, streamer: str) -> None:
    status, headers, frames = raw_stream(
        server, streamer, {"count": 3, "content_type": "text/event-stream"}
    )
    assert status == 200
    assert headers["content-type"] == "application/vnd.amazon.eventstream"
    assert headers["transfer-encoding"] == "chunked"
    assert headers["x-amzn-sagemaker-content-type"] == "text/event-stream"
    assert headers["x-amzn-invoked-production-variant"] == "AllTraffic"
    assert len(headers["x-amzn-requestid"]) == 36
    assert [frame.payload for frame in frames] == [b"tok0 ", b"tok1 ", b"tok2 "]
    for frame in frames:
        assert frame.headers == {
            ":message-type": "event",
            ":event-type": "PayloadPart",
            ":content-type": "application/octet-stream",
        }


def test_accept_travels_as_accept(rt: Any, streamer: str) -> None:
    response = stream(rt, streamer, {"count": 1}, Accept="text/x-tokens")
    assert response["ContentType"] == "text/x-tokens"
    assert parts(response) == [b"tok0 "]


def test_mid_stream_failure_is_a_model_stream_error(
    rt: Any, server: RunningServer, streamer: str
) -> None:
    response = stream(rt, streamer, {"count": 10, "fail_after": 2})
    received: list[bytes] = []
    with pytest.raises(EventStreamError) as error:
        for event in response["Body"]:
            received.append(event["PayloadPart"]["Bytes"])
    assert received == [b"tok0 ", b"tok1 "]
    assert error.value.response["Error"]["Code"] == "ModelStreamError"
    assert "broke" in error.value.response["Error"]["Message"]
    # botocore drops ErrorCode; the frame itself carries it.
    _, _, frames = raw_stream(server, streamer, {"count": 10, "fail_after": 2})
    last = frames[-1]
    assert last.headers == {
        ":message-type": "exception",
        ":exception-type": "ModelStreamError",
        ":content-type": "application/json",
    }
    assert json.loads(last.payload)["ErrorCode"] == "StreamBroken"
    assert [f.payload for f in frames[:-1]] == [b"tok0 ", b"tok1 "]


def test_failure_before_first_byte_is_an_ordinary_error(rt: Any, streamer: str) -> None:
    with pytest.raises(rt.exceptions.ModelError) as error:
        stream(rt, streamer, {"status": 418})
    response = error.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert response["OriginalStatusCode"] == 418
    assert response["OriginalMessage"] == "custom status 418"
    with pytest.raises(rt.exceptions.ModelError) as error:
        stream(rt, streamer, {"count": 3, "fail_after": 0})
    assert error.value.response["OriginalStatusCode"] == 500


def test_validation(rt: Any, streamer: str) -> None:
    with pytest.raises(rt.exceptions.ValidationError) as error:
        stream(rt, "no-such-endpoint", {})
    assert (
        error.value.response["Error"]["Message"]
        == "Endpoint no-such-endpoint of account 000000000000 not found."
    )
    with pytest.raises(rt.exceptions.ValidationError) as error:
        stream(rt, streamer, {}, Accept="a" * 1025)
    assert (
        "Member must have length less than or equal to 1024"
        in error.value.response["Error"]["Message"]
    )
    # Sessions are created by InvokeEndpoint only: the streaming API's pattern forbids NEW_SESSION.
    with pytest.raises(rt.exceptions.ValidationError) as error:
        stream(rt, streamer, {}, SessionId="NEW_SESSION")
    assert "sessionId" in error.value.response["Error"]["Message"]
    with pytest.raises(rt.exceptions.ValidationError):
        stream(rt, streamer, {}, TargetVariant="Nope")


def test_first_part_arrives_while_the_model_is_still_producing(
    rt: Any, streamer: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    response = stream(rt, streamer, {"count": 5, "gate": str(gate)})
    events = iter(response["Body"])
    assert next(events)["PayloadPart"]["Bytes"] == b"tok0 "
    # The model is now blocked until the gate opens: the part above cannot have been buffered.
    gate.touch()
    assert [event["PayloadPart"]["Bytes"] for event in events] == [
        f"tok{i} ".encode() for i in range(1, 5)
    ]


def test_ten_thousand_parts_arrive_complete_and_in_order(rt: Any, streamer: str) -> None:
    received = b"".join(parts(stream(rt, streamer, {"count": 10_000, "prefix": "t"})))
    assert received == b"".join(f"t{i} ".encode() for i in range(10_000))


def test_plain_invoke_joins_the_items(rt: Any, streamer: str) -> None:
    reply = rt.invoke_endpoint(
        EndpointName=streamer, Body=json.dumps({"count": 4}), ContentType="application/json"
    )
    assert reply["Body"].read() == b"tok0 tok1 tok2 tok3 "


def test_disconnect_cancels_the_container_call(rt: Any, streamer: str, tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    response = stream(rt, streamer, {"count": 1_000_000, "closed_marker": str(closed)})
    events = iter(response["Body"])
    assert next(events)["PayloadPart"]["Bytes"] == b"tok0 "
    response["Body"].close()
    deadline = time.monotonic() + 10
    while not closed.exists():
        assert time.monotonic() < deadline, "the model's generator was never closed"
        time.sleep(0.02)
    # The worker is healthy for the next call.
    assert parts(stream(rt, streamer, {"count": 2})) == [b"tok0 ", b"tok1 "]


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(
        data_dir=tmp_path_factory.mktemp("limits") / "data",
        port=free_port(),
        args=["--stream-limit", "2"],
    )
    running.start()
    yield running
    running.stop()


def test_stream_limits(limited: RunningServer) -> None:
    sm, rt = limited.client("sagemaker"), limited.client("sagemaker-runtime")
    name = unique("limits")
    # Several handler threads: a call abandoned mid-pause keeps its thread until the pause ends.
    deploy(
        sm,
        name,
        model_dir=STREAMER,
        environment={"SAGEMAKER_MODEL_SERVER_WORKERS": "4"},
        config_tags=[{"Key": "sagehost:invocation-timeout-seconds", "Value": "1"}],
    )
    # Silent for longer than the invocation timeout after the first part.
    _, _, frames = raw_stream(limited, name, {"count": 3, "pause_after": 1, "pause_s": 3})
    assert [f.payload for f in frames[:-1]] == [b"tok0 "]
    assert json.loads(frames[-1].payload)["ErrorCode"] == "ModelInvocationTimeExceeded"
    # Steady parts, but past the 2-second total limit.
    _, _, frames = raw_stream(limited, name, {"count": 40, "interval_s": 0.1})
    assert frames[-1].headers[":exception-type"] == "ModelStreamError"
    assert json.loads(frames[-1].payload)["ErrorCode"] == "ModelInvocationTimeExceeded"
    assert 5 <= len(frames) - 1 < 40
    # Silent before the first part: an ordinary ModelError, not a stream.
    with pytest.raises(rt.exceptions.ModelError) as error:
        stream(rt, name, {"count": 2, "pause_after": 0, "pause_s": 3})
    assert error.value.response["OriginalStatusCode"] == 0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slow_client_holds_back_the_container(server: RunningServer, streamer: str) -> None:
    """64 MiB streamed to a client that reads slowly: sagehost must not buffer it."""
    assert server.process is not None
    request = json.dumps({"count": 2048, "prefix": "x" * 32768}).encode()
    signed = AWSRequest(
        method="POST",
        url=f"{server.url}/endpoints/{streamer}/invocations-response-stream",
        data=request,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials("test", "test"), "sagemaker", "us-east-1").add_auth(signed)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request(
        "POST", signed.url.split(str(server.port), 1)[1], request, dict(signed.headers.items())
    )
    response = connection.getresponse()
    assert response.status == 200
    before = rss_kib(server.process.pid)
    peak = before
    received = 0
    # Read 8 MiB over about a second, far slower than the model produces.
    while received < 8 * 1024 * 1024:
        received += len(response.read1(64 * 1024))
        time.sleep(0.008)
        peak = max(peak, rss_kib(server.process.pid))
    # Unthrottled, the model would have pushed all 64 MiB into sagehost by now.
    assert peak - before < 16 * 1024, (
        f"sagehost grew by {peak - before} KiB while the client lagged"
    )
    connection.close()
