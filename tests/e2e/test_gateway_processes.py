"""``sagehost serve --gateway-processes 2``: a replica beside the primary serves plain calls,
hands everything else to the primary, and never routes to what the primary has retired.

Which process answers a connection is the kernel's choice, so each check is made over many
fresh connections (or many boto3 clients, each with a connection of its own). The first
twelve hex digits of ``x-amzn-requestid`` name the process that answered.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from sagehost.testing.server import RunningServer, free_port, write_credentials
from tests.e2e.async_helpers import deploy_async
from tests.e2e.conftest import MODELS, deploy, unique
from tests.e2e.test_data_capture import deploy_capturing
from tests.e2e.test_lifecycle import pid_alive, wait_gone

A = ("111111111111", "AKIDALPHA", "alpha-secret")
B = ("222222222222", "AKIDBRAVO", "bravo-secret")
CONNECTIONS = 24


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("replicas")
    running = RunningServer(
        data_dir=tmp / "data",
        port=free_port(),
        args=[
            "--startup-timeout",
            "10",
            "--gateway-processes",
            "2",
            # Only the copies operations make themselves reach the replica in time for a test.
            "--route-refresh",
            "5",
            "--credentials",
            str(write_credentials(tmp / "accounts.toml", A, B)),
            "--file-root",
            str(tmp / "files"),
        ],
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sm(server: RunningServer) -> Any:
    return server.client("sagemaker", key=A[1], secret=A[2])


def clients(server: RunningServer, service: str, count: int = CONNECTIONS) -> list[Any]:
    return [server.client(service, key=A[1], secret=A[2]) for _ in range(count)]


def fresh(
    server: RunningServer,
    path: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    *,
    account: tuple[str, str, str] = A,
) -> tuple[int, dict[str, str], bytes]:
    """One signed POST on a connection of its own."""
    request = AWSRequest(method="POST", url=f"{server.url}{path}", data=body, headers=headers)
    SigV4Auth(Credentials(account[1], account[2]), "sagemaker", "us-east-1").add_auth(request)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers=dict(request.headers.items()))
        reply = connection.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        connection.close()


def unsigned_answers(
    server: RunningServer, method: str, path: str
) -> set[tuple[int, str | None, bytes]]:
    """Status, error type and body of an unsigned request, each on a connection of its own."""
    answers = set()
    for _ in range(CONNECTIONS):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            connection.request(method, path)
            reply = connection.getresponse()
            answers.add((reply.status, reply.getheader("x-amzn-errortype"), reply.read()))
        finally:
            connection.close()
    return answers


def process_of(headers: dict[str, str]) -> str:
    request_id = headers["x-amzn-requestid"]
    return request_id[:8] + request_id[9:13]


def children(server: RunningServer, command: bytes) -> set[int]:
    """Live processes the server started whose command line contains ``command``."""
    assert server.process is not None
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            line = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if parent == server.process.pid and command in line and pid_alive(int(entry.name)):
            found.add(int(entry.name))
    return found


def replica_pids(server: RunningServer) -> set[int]:
    return children(server, b"sagehost.replica")


@pytest.fixture(scope="module")
def echo(sm: Any) -> str:
    name = unique("echo")
    deploy(sm, name, variants=[_variant(name, "AllTraffic", 1.0)])
    return name


def _variant(model: str, name: str, weight: float) -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": model,
        "InitialInstanceCount": 1,
        "InitialVariantWeight": weight,
    }


def test_both_processes_serve_plain_calls_exactly(server: RunningServer, echo: str) -> None:
    answered = set()
    for index in range(CONNECTIONS):
        body = f"hello {index}".encode()
        status, headers, data = fresh(
            server,
            f"/endpoints/{echo}/invocations",
            body,
            {"Content-Type": "text/plain", "X-Amzn-SageMaker-Custom-Attributes": "k=v"},
        )
        assert (status, data) == (200, body)
        assert headers["content-type"] == "text/plain"
        assert headers["x-amzn-invoked-production-variant"] == "AllTraffic"
        assert headers["x-amzn-sagemaker-custom-attributes"] == "echo:k=v"
        answered.add(process_of(headers))
    assert len(answered) == 2, "one process answered every connection"


def test_the_container_sees_what_it_would_from_the_primary(
    server: RunningServer, echo: str
) -> None:
    seen = set()
    for _ in range(CONNECTIONS):
        status, _, data = fresh(
            server,
            f"/endpoints/{echo}/invocations",
            b"x",
            {"Content-Type": "text/plain", "Accept": "application/x-inspect", "X-Extra": "1"},
        )
        assert status == 200
        sent = json.loads(data)["headers"]
        seen.add(tuple(sorted(k.lower() for k in sent)))
    # Whichever process relayed it, the container got the same headers and never Authorization.
    assert len(seen) == 1
    (names,) = seen
    assert "authorization" not in names and "x-extra" not in names
    assert {"content-type", "accept"} <= set(names)


@pytest.mark.parametrize(
    ("case", "status", "error_type"),
    [
        ("model error", 424, "ModelError"),
        ("unknown endpoint", 400, "ValidationError"),
        ("other account", 400, "ValidationError"),
        ("wrong secret", 403, "InvalidSignatureException"),
        ("bad header", 400, "ValidationError"),
        ("too large", 400, "ValidationError"),
    ],
)
def test_every_process_gives_the_same_error(
    server: RunningServer, echo: str, case: str, status: int, error_type: str
) -> None:
    path, body = f"/endpoints/{echo}/invocations", b"status:503"
    headers = {"Content-Type": "text/plain"}
    account = A
    if case == "unknown endpoint":
        path = "/endpoints/no-such-endpoint/invocations"
    elif case == "other account":
        account = B
    elif case == "wrong secret":
        account = (A[0], A[1], "not-the-secret")
    elif case == "bad header":
        headers["X-Amzn-SageMaker-Custom-Attributes"] = "a" * 1025
    elif case == "too large":
        body = b"x" * (6 * 1024 * 1024 + 1)
    answers = set()
    for _ in range(CONNECTIONS if case != "too large" else 8):
        got, reply_headers, data = fresh(server, path, body, headers, account=account)
        assert got == status, data
        answer = json.loads(data)
        assert reply_headers["x-amzn-errortype"].split(":")[0] == error_type
        answers.add(json.dumps(answer, sort_keys=True))
    assert len(answers) == 1, answers
    message = json.loads(answers.pop())
    if case == "model error":
        assert message["OriginalStatusCode"] == 503
    elif case == "unknown endpoint":
        assert message["message"] == f"Endpoint no-such-endpoint of account {A[0]} not found."
    elif case == "other account":
        assert message["message"] == f"Endpoint {echo} of account {B[0]} not found."


@pytest.mark.parametrize("method", ["PUT", "DELETE", "HEAD"])
def test_methods_no_operation_takes_get_the_same_answer(
    server: RunningServer, echo: str, method: str
) -> None:
    answers = unsigned_answers(server, method, f"/endpoints/{echo}/invocations")
    text = f"No operation at {method} /endpoints/{echo}/invocations"
    body = json.dumps({"Message": text, "message": text})
    assert answers == {
        (404, "UnknownOperationException", b"" if method == "HEAD" else body.encode())
    }


def test_the_routes_feed_is_not_served_to_callers(server: RunningServer) -> None:
    answers = unsigned_answers(server, "GET", "/_sagehost/routes?replica=replica-1&after=0")
    text = "No operation at GET /_sagehost/routes"
    body = json.dumps({"Message": text, "message": text}).encode()
    assert answers == {(404, "UnknownOperationException", body)}


def test_control_plane_and_streams_through_every_process(server: RunningServer, sm: Any) -> None:
    name = unique("stream")
    deploy(sm, name, model_dir=MODELS / "streamer")
    for runtime, control in zip(
        clients(server, "sagemaker-runtime", 12), clients(server, "sagemaker", 12), strict=True
    ):
        assert control.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
        response = runtime.invoke_endpoint_with_response_stream(
            EndpointName=name, Body=json.dumps({"count": 3}), ContentType="application/json"
        )
        parts = [event["PayloadPart"]["Bytes"] for event in response["Body"]]
        assert parts == [b"tok0 ", b"tok1 ", b"tok2 "]


def test_a_caller_leaving_a_relayed_stream_stops_the_model(server: RunningServer, sm: Any) -> None:
    name = unique("leave")
    deploy(sm, name, model_dir=MODELS / "streamer")
    markers = server.data_dir.parent / "files" / name
    markers.mkdir(parents=True)
    path = f"/endpoints/{name}/invocations-response-stream"
    for index in range(8):  # one at a time: the model has one worker thread
        marker = markers / f"closed-{index}"
        body = json.dumps({"count": 1_000_000, "closed_marker": str(marker)}).encode()
        request = AWSRequest(
            method="POST",
            url=f"{server.url}{path}",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        SigV4Auth(Credentials(A[1], A[2]), "sagemaker", "us-east-1").add_auth(request)
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request("POST", path, body=body, headers=dict(request.headers.items()))
        reply = connection.getresponse()
        assert reply.status == 200
        assert b"tok0 " in reply.read1(65536)
        connection.close()
        deadline = time.monotonic() + 10
        while not marker.exists():
            assert time.monotonic() < deadline, f"stream {index}: the model was never stopped"
            time.sleep(0.02)


def test_async_calls_through_every_process(server: RunningServer, sm: Any) -> None:
    tmp_path = server.data_dir.parent / "files"  # the --file-root
    tmp_path.mkdir(exist_ok=True)
    name = unique("async")
    deploy_async(server, name, (tmp_path / "out").as_uri(), sm=sm)
    (tmp_path / "in.txt").write_bytes(b"async body")
    outputs = []
    for runtime in clients(server, "sagemaker-runtime", 8):
        accepted = runtime.invoke_endpoint_async(
            EndpointName=name,
            InputLocation=(tmp_path / "in.txt").as_uri(),
            ContentType="text/plain",
        )
        outputs.append(Path(accepted["OutputLocation"].removeprefix("file://")))
    deadline = time.monotonic() + 30
    while not all(path.exists() for path in outputs):
        assert time.monotonic() < deadline, "async results never written"
        time.sleep(0.05)
    assert {path.read_bytes() for path in outputs} == {b"async body"}


def test_calls_the_copy_cannot_serve_go_to_the_primary(server: RunningServer, sm: Any) -> None:
    # Data capture lives in the primary: a replica serving these calls itself would lose them.
    name = unique("capture")
    root = server.data_dir.parent / "files" / name
    capture = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": root.as_uri(),
        "CaptureOptions": [{"CaptureMode": "Input"}],
    }
    deploy_capturing(server, name, capture, sm)
    answered = set()
    for index in range(CONNECTIONS):
        body = f"captured {index}".encode()
        status, headers, data = fresh(
            server, f"/endpoints/{name}/invocations", body, {"Content-Type": "text/plain"}
        )
        assert (status, data) == (200, body)
        answered.add(process_of(headers))
    assert len(answered) == 1  # the primary's request ids only
    deadline = time.monotonic() + 15
    while True:
        records = [
            json.loads(line)
            for path in root.rglob("*.jsonl")
            for line in path.read_text().splitlines()
        ]
        if len(records) >= CONNECTIONS or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    captured = sorted(
        base64.b64decode(r["captureData"]["endpointInput"]["data"]).decode() for r in records
    )  # text/plain is not a configured CSV or JSON type: base64
    assert captured == sorted(f"captured {i}" for i in range(CONNECTIONS))


def test_deleted_endpoint_is_gone_for_every_process_at_once(server: RunningServer, sm: Any) -> None:
    name = unique("gone")
    deploy(sm, name)
    runtimes = clients(server, "sagemaker-runtime")
    for runtime in runtimes:  # each client now holds a connection to one of the processes
        assert runtime.invoke_endpoint(EndpointName=name, Body=b"x")["Body"].read() == b"x"
    sm.delete_endpoint(EndpointName=name)
    for runtime in runtimes:
        with pytest.raises(runtime.exceptions.ValidationError) as error:
            runtime.invoke_endpoint(EndpointName=name, Body=b"x")
        assert error.value.response["Error"]["Message"] == (
            f"Endpoint {name} of account {A[0]} not found."
        )


def test_new_weights_apply_in_every_process_at_once(server: RunningServer, sm: Any) -> None:
    name = unique("weights")
    deploy(sm, name, variants=[_variant(name, "Blue", 1.0), _variant(name, "Green", 1.0)])
    runtimes = clients(server, "sagemaker-runtime")
    for runtime in runtimes:
        runtime.invoke_endpoint(EndpointName=name, Body=b"x")
    sm.update_endpoint_weights_and_capacities(
        EndpointName=name, DesiredWeightsAndCapacities=[{"VariantName": "Blue", "DesiredWeight": 0}]
    )
    for runtime in runtimes:
        for _ in range(3):
            reply = runtime.invoke_endpoint(EndpointName=name, Body=b"x")
            assert reply["InvokedProductionVariant"] == "Green"


def test_update_under_load_fails_no_call(server: RunningServer, sm: Any) -> None:
    name = unique("swap")
    deploy(sm, name)
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-v2", ProductionVariants=[_variant(name, "Next", 1.0)]
    )
    failures: list[BaseException] = []
    served: dict[str, int] = {}
    stop = threading.Event()

    def call(runtime: Any) -> None:
        while not stop.is_set():
            try:
                reply = runtime.invoke_endpoint(EndpointName=name, Body=b"x")
                assert reply["Body"].read() == b"x"
                variant = reply["InvokedProductionVariant"]
                served[variant] = served.get(variant, 0) + 1
            except BaseException as error:  # every failure is the finding
                failures.append(error)

    threads = [
        threading.Thread(target=call, args=(runtime,))
        for runtime in clients(server, "sagemaker-runtime", 6)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        sm.update_endpoint(EndpointName=name, EndpointConfigName=f"{name}-v2")
        deadline = time.monotonic() + 30
        while sm.describe_endpoint(EndpointName=name)["EndpointStatus"] != "InService":
            assert time.monotonic() < deadline
        time.sleep(0.5)  # calls go on after the old instance has stopped
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert served.get("AllTraffic", 0) > 0 and served.get("Next", 0) > 0


def test_killed_replica_is_replaced(server: RunningServer, echo: str) -> None:
    (replica,) = replica_pids(server)
    os.kill(replica, signal.SIGKILL)
    assert wait_gone({replica}) == set()
    # The primary serves alone meanwhile.
    status, _, data = fresh(server, f"/endpoints/{echo}/invocations", b"alone")
    assert (status, data) == (200, b"alone")
    deadline = time.monotonic() + 30
    while not replica_pids(server):
        assert time.monotonic() < deadline, "no replica was started again"
        time.sleep(0.05)
    answered: set[str] = set()
    deadline = time.monotonic() + 30
    while len(answered) < 2:
        assert time.monotonic() < deadline, "the new replica never answered"
        status, headers, data = fresh(server, f"/endpoints/{echo}/invocations", b"again")
        assert (status, data) == (200, b"again")
        answered.add(process_of(headers))


def test_shutdown_stops_every_process(tmp_path: Path) -> None:
    running = RunningServer(
        data_dir=tmp_path / "data", port=free_port(), args=["--gateway-processes", "3"]
    )
    running.start()
    try:
        sm = running.client("sagemaker")
        deploy(sm, unique("bye"))
        replicas = replica_pids(running)
        assert len(replicas) == 2
        assert running.process is not None
        workers = children(running, b"sagehost.modelhost")
        assert len(workers) == 1
    finally:
        code = running.stop()
    assert code == 0
    assert wait_gone(replicas | workers) == set()
