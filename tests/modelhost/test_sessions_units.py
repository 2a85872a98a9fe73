"""Session bookkeeping (with an injected clock) and session settings; no process, no sockets."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from sagehost.modelhost.sessions import SessionError, SessionStore, request_type
from sagehost.modelhost.settings import Settings, SettingsError


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def store(clock: FakeClock, ttl: int = 10) -> SessionStore:
    ids = (f"s{i}" for i in itertools.count(1))
    return SessionStore(ttl, clock=clock, new_id=lambda: next(ids))


def test_expiry_is_a_whole_second_stamped_when_registered() -> None:
    clock = FakeClock(1_700_000_000.75)
    sessions = store(clock)
    session = sessions.new()
    clock.now += 2.5  # an open hook that took a while
    sessions.add(session)
    assert session.expires == 1_700_000_013.0
    assert session.expires_at == dt.datetime(2023, 11, 14, 22, 13, 33, tzinfo=dt.UTC)
    assert session.expires_header == "2023-11-14T22:13:33Z"
    assert sessions.get("s1") is session


def test_expired_and_unknown_ids_are_refused_alike() -> None:
    clock = FakeClock(100.0)
    sessions = store(clock)
    session = sessions.new()
    sessions.add(session)
    clock.now = 109.999
    assert sessions.get("s1") is session
    clock.now = 110.0
    with pytest.raises(SessionError) as expired:
        sessions.get("s1")
    with pytest.raises(SessionError) as unknown:
        sessions.get("nope")
    assert expired.value.status_code == unknown.value.status_code == 400
    assert str(expired.value) == (
        "session 's1' does not exist or has expired; "
        "open a new one with X-Amzn-SageMaker-Session-Id: NEW_SESSION"
    )


def test_pop_expired_takes_only_the_expired_front() -> None:
    clock = FakeClock(0.0)
    sessions = store(clock)
    for start in (0.0, 1.0, 2.0):
        clock.now = start
        sessions.add(sessions.new())
    assert sessions.next_expiry() == 10.0
    clock.now = 11.5
    expired = sessions.pop_expired()
    assert [s.session_id for s in expired] == ["s1", "s2"]
    assert all(s.closed for s in expired)
    assert len(sessions) == 1 and sessions.next_expiry() == 12.0
    assert sessions.pop_expired() == []


def test_remove_and_pop_all_close_sessions() -> None:
    sessions = store(FakeClock(0.0))
    first, second = sessions.new(), sessions.new()
    sessions.add(first)
    sessions.add(second)
    sessions.remove(first)
    assert first.closed and len(sessions) == 1
    assert sessions.pop_all() == [second] and second.closed
    assert sessions.next_expiry() is None
    with pytest.raises(ValueError, match="at least one second"):
        SessionStore(0)


def test_random_ids_match_the_session_id_pattern() -> None:
    session = SessionStore(5).new()
    assert len(session.session_id) == 32
    assert all(c in "0123456789abcdef" for c in session.session_id)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b'{"requestType":"NEW_SESSION"}', "NEW_SESSION"),
        (b' {"requestType": "CLOSE", "extra": 1}', "CLOSE"),
        (b'{"requestType": 3}', None),
        (b'["requestType"]', None),
        (b"{not json", None),
        (b"requestType", None),
        (b'{"requestType":"CLOSE","pad":"' + b"x" * 2000 + b'"}', None),
    ],
)
def test_request_type(body: bytes, kind: str | None) -> None:
    assert request_type(body) == kind


def test_session_settings() -> None:
    assert Settings.from_env({}).session_ttl_seconds is None
    # The expiration alone does not enable sessions.
    assert Settings.from_env({"SAGEMAKER_SESSIONS_EXPIRATION": "60"}).session_ttl_seconds is None
    enabled = {"SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "true"}
    assert Settings.from_env(enabled).session_ttl_seconds == 1200
    short = {**enabled, "SAGEMAKER_SESSIONS_EXPIRATION": "30"}
    assert Settings.from_env(short).session_ttl_seconds == 30
    with pytest.raises(SettingsError, match="SAGEMAKER_SESSIONS_EXPIRATION must be between 1 and"):
        Settings.from_env({**enabled, "SAGEMAKER_SESSIONS_EXPIRATION": "0"})
