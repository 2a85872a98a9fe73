"""Notifications: SNS through a moto server (read back from a subscribed SQS queue) and
webhooks on a loopback HTTP server."""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sagehost.core.errors import DependencyFailed, InvalidRequest
from sagehost.core.ports import Notifier
from sagehost.storage.notify import TopicNotifier
from sagehost.testing.moto import running_moto

MESSAGE = json.dumps(
    {
        "awsRegion": "us-east-1",
        "invocationStatus": "Completed",
        "requestParameters": {"endpointName": "ep", "inputLocation": "s3://b/in.csv"},
        "responseParameters": {"outputLocation": "s3://b/out/é.out"},
        "inferenceId": "1111",
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    },
    ensure_ascii=False,
)


def fast() -> TopicNotifier:
    return TopicNotifier(timeout_s=5, attempts=3, backoff_s=0.01)


def test_the_notifier_is_a_notifier() -> None:
    notifier: Notifier = TopicNotifier()
    assert isinstance(notifier, TopicNotifier)


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "my-topic",
        "ftp://host/hook",
        "https://",
        "http://host:notaport/x",
        "arn:aws:sqs:us-east-1:123456789012:queue",
        "arn:aws:sns:us-east-1:1234:short-account",
    ],
)
def test_other_topics_are_invalid(topic: str) -> None:
    with pytest.raises(InvalidRequest):
        asyncio.run(TopicNotifier().publish(topic, MESSAGE))


# --- webhooks --------------------------------------------------------------------------------


@dataclass
class Hook:
    url: str
    statuses: list[int]  # answered in order; the last one repeats
    received: list[tuple[str, str | None, bytes]] = field(default_factory=list)


class _HookHandler(http.server.BaseHTTPRequestHandler):
    hook: Hook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.hook.received.append((self.path, self.headers.get("Content-Type"), body))
        statuses = self.hook.statuses
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook(url="", statuses=[200])
    handler = type("Handler", (_HookHandler,), {"hook": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_webhook_receives_the_exact_json(hook: Hook) -> None:
    asyncio.run(fast().publish(hook.url + "?token=abc", MESSAGE))
    assert hook.received == [("/hook?token=abc", "application/json", MESSAGE.encode())]


def test_webhook_failing_twice_is_retried(hook: Hook) -> None:
    hook.statuses[:] = [500, 503, 204]
    asyncio.run(fast().publish(hook.url, MESSAGE))
    assert [body for _, _, body in hook.received] == [MESSAGE.encode()] * 3


def test_webhook_always_failing_raises_after_every_attempt(hook: Hook) -> None:
    hook.statuses[:] = [500]
    with pytest.raises(DependencyFailed) as failed:
        asyncio.run(fast().publish(hook.url + "?token=secret", MESSAGE))
    assert failed.value.message == f"Notifying {hook.url} failed after 3 attempts: HTTP 500."
    assert len(hook.received) == 3


@pytest.mark.parametrize("status", [400, 404, 302])
def test_webhook_client_errors_and_redirects_are_not_retried(hook: Hook, status: int) -> None:
    hook.statuses[:] = [status, 200]
    with pytest.raises(DependencyFailed) as failed:
        asyncio.run(fast().publish(hook.url, MESSAGE))
    assert failed.value.message == f"Notifying {hook.url} failed: HTTP {status}."
    assert [path for path, _, _ in hook.received] == ["/hook"]


def test_webhook_too_many_requests_is_retried(hook: Hook) -> None:
    hook.statuses[:] = [429, 200]
    asyncio.run(fast().publish(hook.url, MESSAGE))
    assert len(hook.received) == 2


def test_unreachable_webhook_raises() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        with pytest.raises(DependencyFailed, match=f"Notifying {url} failed after 3 attempts"):
            asyncio.run(fast().publish(url, MESSAGE))


# --- SNS, through a moto server on loopback --------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with running_moto() as endpoint:
        yield endpoint


@pytest.fixture
def sns(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Any, Any]:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    import boto3

    session = boto3.session.Session()
    sqs = session.client("sqs", endpoint_url=moto_endpoint)
    return session.client("sns"), sqs


def subscribed_queue(sns: Any, sqs: Any, topic_arn: str, name: str) -> str:
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return str(queue_url)


def test_sns_topic_delivers_the_exact_message(sns: tuple[Any, Any]) -> None:
    sns_client, sqs = sns
    topic_arn = sns_client.create_topic(Name="async-success")["TopicArn"]
    queue_url = subscribed_queue(sns_client, sqs, topic_arn, "success-queue")

    asyncio.run(TopicNotifier().publish(topic_arn, MESSAGE))

    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=5)
    envelopes = [json.loads(m["Body"]) for m in received["Messages"]]
    assert [(e["Type"], e["TopicArn"], e["Message"]) for e in envelopes] == [
        ("Notification", topic_arn, MESSAGE)
    ]


def test_sns_topic_in_another_region_is_published_there(sns: tuple[Any, Any]) -> None:
    import boto3

    _, sqs = sns
    west = boto3.session.Session().client("sns", region_name="eu-west-1")
    topic_arn = west.create_topic(Name="async-errors")["TopicArn"]
    assert ":eu-west-1:" in topic_arn
    queue_url = subscribed_queue(west, sqs, topic_arn, "errors-queue")

    asyncio.run(TopicNotifier().publish(topic_arn, MESSAGE))

    received = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=5)
    assert [json.loads(m["Body"])["Message"] for m in received["Messages"]] == [MESSAGE]


def test_missing_sns_topic_raises_naming_it(sns: tuple[Any, Any]) -> None:
    topic_arn = "arn:aws:sns:us-east-1:123456789012:never-created"
    with pytest.raises(DependencyFailed, match=f"Publishing to {topic_arn} failed: NotFound"):
        asyncio.run(TopicNotifier().publish(topic_arn, MESSAGE))
