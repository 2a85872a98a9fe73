"""Async notifications reach real peers: an SNS topic in moto (read back from a subscribed SQS
queue) and a webhook on loopback, in the JSON shape SageMaker publishes."""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from sagehost.testing.moto import moto_environment, running_moto
from sagehost.testing.server import RunningServer, free_port
from tests.e2e.async_helpers import deploy_async, describe_job, wait_finished
from tests.e2e.conftest import unique

BUCKET = "notify-bucket"
REGION = "us-east-1"
ISO_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LIMIT = 128 * 1024  # the largest response a notification embeds


@dataclass
class Hook:
    """What the webhook received: (path, Content-Type, body) per POST, in arrival order."""

    url: str
    posts: list[tuple[str, str, bytes]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def record(self, path: str, content_type: str, body: bytes) -> None:
        with self.arrived:
            self.posts.append((path, content_type, body))
            self.arrived.notify_all()

    def at(self, path: str) -> list[dict[str, Any]]:
        """The messages posted to ``path``; each must be a JSON document, sent as one."""
        with self.arrived:
            posted = [(kind, body) for where, kind, body in self.posts if where == path]
        assert [kind for kind, _ in posted] == ["application/json"] * len(posted)
        return [json.loads(body) for _, body in posted]

    def results(self, path: str, timeout: float = 20) -> list[dict[str, Any]]:
        """The inference results (test notifications aside) posted to ``path``, once there is one."""

        def found() -> list[dict[str, Any]]:
            return [m for m in self.at(path) if m.get("eventName") == "InferenceResult"]

        with self.arrived:
            self.arrived.wait_for(found, timeout)
        results = found()
        assert results, f"nothing posted to {path}: {self.posts}"
        return results


@pytest.fixture(scope="module")
def aws() -> Iterator[dict[str, Any]]:
    with running_moto() as moto:
        session = boto3.session.Session(
            aws_access_key_id="moto", aws_secret_access_key="moto", region_name=REGION
        )
        clients = {name: session.client(name, endpoint_url=moto) for name in ("s3", "sns", "sqs")}
        clients["s3"].create_bucket(Bucket=BUCKET)
        yield {"url": moto, **clients}


@pytest.fixture(scope="module")
def server(
    aws: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    env = moto_environment(aws["url"], "S3", "SNS")
    running = RunningServer(
        data_dir=tmp_path_factory.mktemp("notify") / "data", port=free_port(), env=env
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def hook() -> Iterator[Hook]:
    port = free_port()
    recorder = Hook(f"http://127.0.0.1:{port}")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            recorder.record(self.path, self.headers.get("Content-Type", ""), body)
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield recorder
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def subscribed_queue(aws: dict[str, Any], topic_name: str) -> tuple[str, str]:
    """A topic and an SQS queue subscribed to it: (topic ARN, queue URL)."""
    topic = aws["sns"].create_topic(Name=topic_name)["TopicArn"]
    queue_url = aws["sqs"].create_queue(QueueName=f"{topic_name}-q")["QueueUrl"]
    queue_arn = aws["sqs"].get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    aws["sns"].subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    return topic, queue_url


def sns_results(aws: dict[str, Any], queue_url: str, topic: str) -> list[dict[str, Any]]:
    """The inference results (test notifications aside) delivered to the queue, unwrapped from
    their SNS envelopes, once there is one."""
    results: list[dict[str, Any]] = []
    for _ in range(20):
        reply = aws["sqs"].receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        for raw in reply.get("Messages", []):
            envelope = json.loads(raw["Body"])
            assert envelope["Type"] == "Notification"
            assert envelope["TopicArn"] == topic
            message = json.loads(envelope["Message"])
            if message.get("eventName") != "TestNotification":
                results.append(message)
        if results:
            return results
    raise AssertionError(f"no notification reached {topic}")


def without_times(message: dict[str, Any]) -> dict[str, Any]:
    """The message minus its two timestamps, after checking their format and order."""
    rest = dict(message)
    event, received = rest.pop("eventTime"), rest.pop("receivedTime")
    assert ISO_MILLIS.match(event), event
    assert ISO_MILLIS.match(received), received
    assert received <= event
    return rest


def test_success_notification_to_an_sns_topic(server: RunningServer, aws: dict[str, Any]) -> None:
    name = unique("sns-ok")
    topic, queue_url = subscribed_queue(aws, name)
    deploy_async(
        server,
        name,
        f"s3://{BUCKET}/{name}/out",
        failure=f"s3://{BUCKET}/{name}/failed",
        notification={
            "SuccessTopic": topic,
            "ErrorTopic": topic,
            "IncludeInferenceResponseIn": ["SUCCESS_NOTIFICATION_TOPIC"],
        },
    )
    body = b'{"rows": [[1, 2], [3, 4]]}'
    aws["s3"].put_object(Bucket=BUCKET, Key=f"{name}/in.json", Body=body)
    rt = server.client("sagemaker-runtime")
    reply = rt.invoke_endpoint_async(
        EndpointName=name,
        InputLocation=f"s3://{BUCKET}/{name}/in.json",
        ContentType="application/json",
        InferenceId="ok-1",
    )
    output = f"s3://{BUCKET}/{name}/out/ok-1.out"
    assert reply["OutputLocation"] == output

    [message] = sns_results(aws, queue_url, topic)
    assert without_times(message) == {
        "awsRegion": REGION,
        "invocationStatus": "Completed",
        "requestParameters": {
            "endpointName": name,
            "inputLocation": f"s3://{BUCKET}/{name}/in.json",
            "contentType": "application/json",
        },
        "responseParameters": {"outputLocation": output, "contentType": "application/json"},
        "inferenceId": "ok-1",
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
        "responseBody": {
            "content": body.decode(),
            "contentType": "application/json",
            "encoding": "utf-8",
        },
    }
    stored = aws["s3"].get_object(Bucket=BUCKET, Key=f"{name}/out/ok-1.out")
    assert stored["Body"].read() == body
    assert stored["ContentType"] == "application/json"
    assert describe_job(server, name, "ok-1")["Status"] == "Completed"


def test_error_notification_to_a_webhook(
    server: RunningServer, aws: dict[str, Any], hook: Hook
) -> None:
    name = unique("hook-err")
    deploy_async(
        server,
        name,
        f"s3://{BUCKET}/{name}/out",
        failure=f"s3://{BUCKET}/{name}/failed",
        notification={
            "SuccessTopic": f"{hook.url}/{name}/ok",
            "ErrorTopic": f"{hook.url}/{name}/error?token=secret",
            "IncludeInferenceResponseIn": ["ERROR_NOTIFICATION_TOPIC"],
        },
    )
    aws["s3"].put_object(Bucket=BUCKET, Key=f"{name}/in.txt", Body=b"raise:the model refused")
    rt = server.client("sagemaker-runtime")
    reply = rt.invoke_endpoint_async(
        EndpointName=name,
        InputLocation=f"s3://{BUCKET}/{name}/in.txt",
        ContentType="text/plain",
        InferenceId="bad-1",
    )
    failure = f"s3://{BUCKET}/{name}/failed/bad-1-error.out"
    assert reply["FailureLocation"] == failure
    reason = (
        "ClientError: Received server error (500) from model. "
        "See the sagehost log of the endpoint for more information."
    )

    [message] = hook.results(f"/{name}/error?token=secret")
    assert without_times(message) == {
        "awsRegion": REGION,
        "invocationStatus": "Failed",
        "failureReason": reason,
        "requestParameters": {
            "endpointName": name,
            "inputLocation": f"s3://{BUCKET}/{name}/in.txt",
            "contentType": "text/plain",
        },
        "responseParameters": {"failureLocation": failure},
        "inferenceId": "bad-1",
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
        "responseBody": {
            "content": "the model refused",
            "contentType": "text/plain; charset=utf-8",
            "encoding": "utf-8",
        },
    }
    stored = aws["s3"].get_object(Bucket=BUCKET, Key=f"{name}/failed/bad-1-error.out")
    assert stored["Body"].read() == b"the model refused"
    listed = aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix=f"{name}/out/")
    assert listed["KeyCount"] == 0
    job = describe_job(server, name, "bad-1")
    assert (job["Status"], job["FailureReason"], job["FailureLocation"]) == (
        "Failed",
        reason,
        failure,
    )
    assert [m for m in hook.at(f"/{name}/ok") if m.get("eventName") == "InferenceResult"] == []


@pytest.mark.parametrize(("size", "embedded"), [(LIMIT, True), (LIMIT + 1, False)])
def test_only_responses_up_to_128_kib_are_embedded(
    server: RunningServer, aws: dict[str, Any], hook: Hook, size: int, embedded: bool
) -> None:
    name = unique("hook-big")
    deploy_async(
        server,
        name,
        f"s3://{BUCKET}/{name}/out",
        notification={
            "SuccessTopic": f"{hook.url}/{name}/ok",
            "IncludeInferenceResponseIn": ["SUCCESS_NOTIFICATION_TOPIC"],
        },
    )
    body = b"0123456789abcdef" * (size // 16) + b"z" * (size % 16)
    assert len(body) == size
    aws["s3"].put_object(Bucket=BUCKET, Key=f"{name}/in.txt", Body=body)
    server.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=name,
        InputLocation=f"s3://{BUCKET}/{name}/in.txt",
        ContentType="text/plain",
        InferenceId="big",
    )
    [message] = hook.results(f"/{name}/ok")
    assert message["invocationStatus"] == "Completed"
    assert message["responseParameters"] == {
        "outputLocation": f"s3://{BUCKET}/{name}/out/big.out",
        "contentType": "text/plain",
    }
    if embedded:
        assert message["responseBody"] == {
            "content": body.decode(),
            "contentType": "text/plain",
            "encoding": "utf-8",
        }
    else:
        assert "responseBody" not in message
    # Embedded or not, the whole response is stored.
    stored = aws["s3"].get_object(Bucket=BUCKET, Key=f"{name}/out/big.out")
    assert stored["Body"].read() == body
    assert wait_finished(server, name, "big")["Status"] == "Completed"


def test_create_endpoint_publishes_a_test_notification(server: RunningServer, hook: Hook) -> None:
    name = unique("hook-test")
    deploy_async(
        server,
        name,
        f"s3://{BUCKET}/{name}/out",
        notification={
            "SuccessTopic": f"{hook.url}/{name}/ok",
            "ErrorTopic": f"{hook.url}/{name}/error",
        },
    )
    expected = {
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "TestNotification",
    }
    with hook.arrived:
        hook.arrived.wait_for(
            lambda: hook.at(f"/{name}/ok") and hook.at(f"/{name}/error"), timeout=3
        )
    assert hook.at(f"/{name}/ok") == [expected]
    assert hook.at(f"/{name}/error") == [expected]
