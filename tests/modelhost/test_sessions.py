"""Stateful sessions in the built-in runtime (runtime-api.md §7.6), against real processes."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from modelhost_helpers import Host, Launcher, Reply, call

MODEL = Path(__file__).resolve().parents[1] / "models" / "sessions_counter"
JSON = {"Content-Type": "application/json"}
SESSION = "X-Amzn-SageMaker-Session-Id"
NEW_SESSION_HEADER = re.compile(
    r"^(?P<id>[0-9a-f]{32}); Expires=(?P<expires>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)$"
)


def copy_model(root: Path, name: str) -> Path:
    target = root / name
    shutil.copytree(MODEL, target)
    return target


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_model(tmp_path_factory.mktemp("sessions"), "counter")


@pytest.fixture(scope="module")
def host(module_launcher: Launcher, model_dir: Path) -> Host:
    env = {"SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": "4"}
    return module_launcher.start(model_dir, env)


def send(host: Host, session: str | None, body: object, **headers: str) -> Reply:
    extra = {SESSION: session} if session is not None else {}
    return call(host.port, "POST", "/invocations", json.dumps(body), {**JSON, **extra, **headers})


def expires(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def open_session(host: Host) -> str:
    reply = send(host, "NEW_SESSION", {"requestType": "NEW_SESSION"})
    assert reply.status == 200, reply.text
    match = NEW_SESSION_HEADER.match(reply.headers["x-amzn-sagemaker-new-session-id"])
    assert match is not None
    return match["id"]


def closed_log(model_dir: Path) -> str:
    log = model_dir / "closed.log"
    return log.read_text() if log.exists() else ""


def test_new_session_is_answered_by_the_runtime(host: Host) -> None:
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    reply = send(host, "NEW_SESSION", {"requestType": "NEW_SESSION"})
    match = NEW_SESSION_HEADER.match(reply.headers["x-amzn-sagemaker-new-session-id"])
    assert match is not None
    assert (reply.status, reply.headers["content-type"], json.loads(reply.body)) == (
        200,
        "application/json",
        {"sessionId": match["id"], "expiresAt": match["expires"]},
    )
    lifetime = expires(match["expires"]) - before
    assert dt.timedelta(seconds=1200) <= lifetime <= dt.timedelta(seconds=1202)


def test_state_is_kept_across_calls_and_sessions_are_separate(host: Host) -> None:
    first, second = open_session(host), open_session(host)
    assert first != second
    counts = [json.loads(send(host, first, {}).body)["count"] for _ in range(3)]
    assert counts == [1, 2, 3]
    reply = json.loads(send(host, second, {}).body)
    assert (reply["session"], reply["count"]) == (second, 1)
    assert json.loads(send(host, None, {}).body) == {
        "session": None,
        "count": None,
        "expires": None,
    }


def test_new_session_with_a_payload_runs_the_handlers(host: Host) -> None:
    reply = send(host, "NEW_SESSION", {"op": "count"})
    assert reply.status == 200
    match = NEW_SESSION_HEADER.match(reply.headers["x-amzn-sagemaker-new-session-id"])
    assert match is not None
    assert json.loads(reply.body) == {
        "session": match["id"],
        "count": 1,
        "expires": match["expires"],
    }
    assert json.loads(send(host, match["id"], {}).body)["count"] == 2


def test_close_runs_the_hook_and_forgets_the_session(host: Host, model_dir: Path) -> None:
    session = open_session(host)
    send(host, session, {})
    reply = send(host, session, {"requestType": "CLOSE"})
    assert (reply.status, reply.headers["x-amzn-sagemaker-closed-session-id"]) == (200, session)
    assert json.loads(reply.body) == {"sessionId": session, "status": "closed"}
    assert f"{session} count=1\n" in closed_log(model_dir)
    after = send(host, session, {})
    assert (after.status, after.text) == (
        400,
        f"session {session!r} does not exist or has expired; "
        "open a new one with X-Amzn-SageMaker-Session-Id: NEW_SESSION",
    )
    assert send(host, session, {"requestType": "CLOSE"}).status == 400


def test_unknown_session_is_400(host: Host) -> None:
    reply = send(host, "abc123", {})
    assert (reply.status, reply.headers["content-type"], reply.text) == (
        400,
        "text/plain; charset=utf-8",
        "session 'abc123' does not exist or has expired; "
        "open a new one with X-Amzn-SageMaker-Session-Id: NEW_SESSION",
    )


def test_close_without_a_session_and_refused_sessions(host: Host) -> None:
    reply = send(host, "NEW_SESSION", {"requestType": "CLOSE"})
    assert (reply.status, reply.text) == (400, "a CLOSE request must name an open session")
    refused = send(
        host,
        "NEW_SESSION",
        {"requestType": "NEW_SESSION"},
        **{"X-Amzn-SageMaker-Custom-Attributes": "refuse"},
    )
    assert (refused.status, refused.text) == (403, "this model refuses new sessions today")
    assert "x-amzn-sagemaker-new-session-id" not in refused.headers


def test_streaming_sees_the_session(host: Host) -> None:
    session = open_session(host)
    send(host, session, {})
    reply = send(host, session, {"op": "stream", "n": 3})
    assert (reply.status, reply.headers["transfer-encoding"]) == (200, "chunked")
    assert reply.text == f"{session}:2\n{session}:3\n{session}:4\n"
    assert json.loads(send(host, session, {}).body)["count"] == 5


def test_calls_of_one_session_never_overlap(host: Host) -> None:
    # Four worker threads; each call reads the counter, sleeps, then writes it back + 1.
    session = open_session(host)
    replies: list[Reply] = []
    threads = [
        threading.Thread(target=lambda: replies.append(send(host, session, {"sleep_s": 0.02})))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(json.loads(r.body)["count"] for r in replies) == list(range(1, 9))


def test_sessions_expire(launcher: Launcher, tmp_path: Path) -> None:
    model_dir = copy_model(tmp_path, "short")
    env = {"SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "true", "SAGEMAKER_SESSIONS_EXPIRATION": "1"}
    host = launcher.start(model_dir, env)
    reply = send(host, "NEW_SESSION", {"requestType": "NEW_SESSION"})
    match = NEW_SESSION_HEADER.match(reply.headers["x-amzn-sagemaker-new-session-id"])
    assert match is not None
    session = match["id"]
    deadline = time.monotonic() + 10
    # The close hook runs on expiry even without any further call (a timer drops the session).
    while f"{session} count=0\n" not in closed_log(model_dir):
        assert time.monotonic() < deadline, "the expired session was never closed"
        time.sleep(0.02)
    assert dt.datetime.now(dt.UTC) >= expires(match["expires"])
    after = send(host, session, {})
    assert (after.status, after.text) == (
        400,
        f"session {session!r} does not exist or has expired; "
        "open a new one with X-Amzn-SageMaker-Session-Id: NEW_SESSION",
    )


def test_disabled_sessions_leave_the_header_to_the_handlers(
    launcher: Launcher, tmp_path: Path
) -> None:
    host = launcher.start(copy_model(tmp_path, "plain"))
    reply = send(host, "NEW_SESSION", {"op": "count"})
    assert (reply.status, json.loads(reply.body)) == (
        200,
        {"session": None, "count": None, "expires": None},
    )
    assert "x-amzn-sagemaker-new-session-id" not in reply.headers


def test_sessions_of_a_multi_model_container_close_on_unload(
    launcher: Launcher, tmp_path: Path
) -> None:
    model_dir = copy_model(tmp_path, "mme-counter")
    env = {"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "true"}
    host = launcher.start(tmp_path, env)
    body = json.dumps({"model_name": "counter", "url": str(model_dir)})
    assert call(host.port, "POST", "/models", body, JSON).status == 200
    path = "/models/counter/invoke"
    opened = call(host.port, "POST", path, '{"op": "count"}', {**JSON, SESSION: "NEW_SESSION"})
    match = NEW_SESSION_HEADER.match(opened.headers["x-amzn-sagemaker-new-session-id"])
    assert match is not None and json.loads(opened.body)["count"] == 1
    again = call(host.port, "POST", path, "{}", {**JSON, SESSION: match["id"]})
    assert json.loads(again.body)["count"] == 2
    assert call(host.port, "DELETE", "/models/counter").status == 200
    assert closed_log(model_dir) == f"{match['id']} count=2\n"
