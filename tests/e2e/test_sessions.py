"""Stateful sessions (§7.6) through boto3, against a session-aware BYO container."""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import pytest

from tests.e2e.conftest import CONTAINERS, deploy, unique

ACCOUNT = "000000000000"
IMAGE = f"process:{sys.executable} {CONTAINERS / 'session_server.py'}"
NEW_SESSION = "NEW_SESSION"
SESSION = re.compile(r"^([0-9a-f-]{36}); Expires=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def deploy_sessions(sm: Any, name: str, count: int = 1, **environment: str) -> str:
    deploy(
        sm,
        name,
        image=IMAGE,
        model_dir=None,
        environment=environment or None,
        variants=[{"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": count}],
    )
    return name


@pytest.fixture(scope="module")
def sessions(sm: Any) -> str:
    return deploy_sessions(sm, unique("sess"), count=3)


@pytest.fixture(scope="module")
def short(sm: Any) -> str:
    """Sessions that live two seconds, announced DJL-style."""
    return deploy_sessions(
        sm,
        unique("short"),
        SESSION_TTL_S="2",
        SESSION_HEADER="X-Amzn-SageMaker-Session-Id",
    )


def call(rt: Any, name: str, session: str | None = None, **body: Any) -> Any:
    extra = {"SessionId": session} if session is not None else {}
    return rt.invoke_endpoint(
        EndpointName=name, Body=json.dumps(body), ContentType="application/json", **extra
    )


def answer(reply: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(reply["Body"].read())
    return result


def open_session(rt: Any, name: str) -> tuple[str, int]:
    reply = call(rt, name, NEW_SESSION, requestType=NEW_SESSION)
    match = SESSION.match(reply["NewSessionId"])
    assert match is not None, reply["NewSessionId"]
    opened = answer(reply)
    assert opened["session"] == match.group(1)
    return match.group(1), opened["pid"]


def refused(rt: Any, name: str, session: str) -> str:
    with pytest.raises(rt.exceptions.ValidationError) as error:
        call(rt, name, session)
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    message: str = error.value.response["Error"]["Message"]
    return message


def test_new_session_returns_the_containers_id(rt: Any, sessions: str) -> None:
    reply = call(rt, sessions, NEW_SESSION, requestType=NEW_SESSION)
    assert reply["ResponseMetadata"]["HTTPStatusCode"] == 200
    match = SESSION.match(reply["NewSessionId"])
    assert match is not None, reply["NewSessionId"]
    assert answer(reply)["session"] == match.group(1)
    assert "ClosedSessionId" not in reply


def test_calls_stick_to_the_sessions_instance(rt: Any, sessions: str) -> None:
    session, pid = open_session(rt, sessions)
    seen = [answer(call(rt, sessions, session)) for _ in range(50)]
    assert {s["pid"] for s in seen} == {pid}
    assert [s["count"] for s in seen] == list(range(1, 51))  # one container state throughout
    assert {s["session"] for s in seen} == {session}
    # The endpoint has three instances, and calls without a session spread over them.
    assert len({answer(call(rt, sessions))["pid"] for _ in range(30)}) > 1


def test_close_forgets_the_session(rt: Any, sessions: str) -> None:
    session, _ = open_session(rt, sessions)
    call(rt, sessions, session)
    reply = call(rt, sessions, session, requestType="CLOSE")
    assert reply["ClosedSessionId"] == session
    assert refused(rt, sessions, session) == (
        f"Session {session} is not an open session of endpoint {sessions} of account {ACCOUNT}."
    )


def test_unknown_session(rt: Any, sessions: str) -> None:
    assert refused(rt, sessions, "no-such-session") == (
        f"Session no-such-session is not an open session of endpoint {sessions} of account "
        f"{ACCOUNT}."
    )


def test_a_session_belongs_to_its_endpoint(rt: Any, sessions: str, short: str) -> None:
    session, _ = open_session(rt, sessions)
    assert refused(rt, short, session) == (
        f"Session {session} is not an open session of endpoint {short} of account {ACCOUNT}."
    )
    assert answer(call(rt, sessions, session))["count"] == 1


def test_streaming_calls_use_the_session(rt: Any, sessions: str) -> None:
    session, pid = open_session(rt, sessions)
    call(rt, sessions, session)
    response = rt.invoke_endpoint_with_response_stream(
        EndpointName=sessions,
        Body=json.dumps({"stream": 3}),
        ContentType="application/json",
        SessionId=session,
    )
    assert response["ContentType"] == "text/plain"
    chunks = [event["PayloadPart"]["Bytes"] for event in response["Body"]]
    assert chunks == [f"{session}:{pid}:2:{i}\n".encode() for i in range(3)]
    assert answer(call(rt, sessions, session))["count"] == 3


def test_streaming_calls_cannot_open_sessions(rt: Any, sessions: str) -> None:
    with pytest.raises(rt.exceptions.ValidationError) as error:
        rt.invoke_endpoint_with_response_stream(
            EndpointName=sessions, Body=b"{}", SessionId=NEW_SESSION
        )
    # The API's own pattern for a streaming SessionId leaves NEW_SESSION out.
    assert error.value.response["Error"]["Message"] == (
        "1 validation error detected: Value 'NEW_SESSION' at 'sessionId' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*$"
    )
    with pytest.raises(rt.exceptions.ValidationError) as error:
        rt.invoke_endpoint_with_response_stream(
            EndpointName=sessions, Body=b"{}", SessionId="unknown-1"
        )
    assert error.value.response["Error"]["Message"] == (
        f"Session unknown-1 is not an open session of endpoint {sessions} of account {ACCOUNT}."
    )


def test_djl_style_header_is_passed_on_as_new_session_id(rt: Any, short: str) -> None:
    reply = call(rt, short, NEW_SESSION, requestType=NEW_SESSION)
    match = SESSION.match(reply["NewSessionId"])
    assert match is not None, reply["NewSessionId"]
    headers = reply["ResponseMetadata"]["HTTPHeaders"]
    assert "x-amzn-sagemaker-session-id" not in headers
    assert answer(call(rt, short, match.group(1)))["count"] == 1


def test_an_expired_session_is_refused_then_forgotten(rt: Any, short: str) -> None:
    session, _ = open_session(rt, short)
    assert answer(call(rt, short, session))["count"] == 1
    deadline = time.monotonic() + 10
    while True:
        try:
            call(rt, short, session)
        except rt.exceptions.ValidationError as error:
            message = error.response["Error"]["Message"]
            break
        assert time.monotonic() < deadline, "the session never expired"
        time.sleep(0.1)  # polling for the expiry, not synchronising
    expired = re.fullmatch(
        rf"Session {session} of endpoint {short} of account {ACCOUNT} expired at "
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ; open a new one with NEW_SESSION\.",
        message,
    )
    assert expired is not None, message
    assert refused(rt, short, session) == (
        f"Session {session} is not an open session of endpoint {short} of account {ACCOUNT}."
    )


def test_a_session_whose_instance_was_replaced_is_refused(sm: Any, rt: Any) -> None:
    name = deploy_sessions(sm, unique("moving"))
    session, _ = open_session(rt, name)
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-next",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}
        ],
    )
    sm.update_endpoint(EndpointName=name, EndpointConfigName=f"{name}-next")
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name)
    assert refused(rt, name, session) == (
        f"The instance that held session {session} of endpoint {name} of account {ACCOUNT} "
        "has stopped; open a new session with NEW_SESSION."
    )
    assert refused(rt, name, session).startswith(f"Session {session} is not an open session")
