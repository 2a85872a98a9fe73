from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from sagehost.core.job_states import (
    DEFAULT_MAX_ATTEMPTS,
    IllegalJobTransition,
    JobEvent,
    JobStatus,
    advance,
    attempts_exhausted_reason,
    expired_reason,
    expires_at,
    is_expired,
    lease_expired,
    on_lease_lost,
)
from sagehost.core.ports import Job

S = JobStatus
E = JobEvent

LEGAL = {
    (S.QUEUED, E.CLAIM): S.RUNNING,
    (S.QUEUED, E.EXPIRE): S.FAILED,
    (S.QUEUED, E.FAIL): S.FAILED,
    (S.RUNNING, E.SUCCEED): S.COMPLETED,
    (S.RUNNING, E.FAIL): S.FAILED,
    (S.RUNNING, E.RETRY): S.QUEUED,
}
ILLEGAL = [pair for pair in itertools.product(S, E) if pair not in LEGAL]


def make_job(**changes: object) -> Job:
    job = Job(
        job_id="j1",
        account="111122223333",
        endpoint_name="ep",
        inference_id="inf-1",
        input_location="s3://bucket/in.json",
        output_location="s3://bucket/out/inf-1.out",
        failure_location=None,
        content_type="application/json",
        accept=None,
        custom_attributes=None,
        invocation_timeout_s=900,
        ttl_s=60,
        enqueued_at=1000.0,
    )
    return replace(job, **changes)  # type: ignore[arg-type]


def test_status_values_are_the_wire_names() -> None:
    assert [s.value for s in S] == ["Queued", "Running", "Completed", "Failed"]


@pytest.mark.parametrize(("status", "event"), list(LEGAL))
def test_legal_transition(status: JobStatus, event: JobEvent) -> None:
    assert advance(status, event) is LEGAL[(status, event)]


@pytest.mark.parametrize(("status", "event"), ILLEGAL)
def test_illegal_transition(status: JobStatus, event: JobEvent) -> None:
    with pytest.raises(IllegalJobTransition) as caught:
        advance(status, event)
    assert caught.value.status is status
    assert caught.value.event is event
    assert str(caught.value) == f"{event.value} is not allowed while the job is {status.value}"


def test_every_pair_is_classified() -> None:
    assert len(LEGAL) + len(ILLEGAL) == len(S) * len(E) == 20


def test_finished_jobs_accept_no_event() -> None:
    for status, event in itertools.product((S.COMPLETED, S.FAILED), E):
        with pytest.raises(IllegalJobTransition):
            advance(status, event)


def test_queued_job_expires_once_its_ttl_has_fully_elapsed() -> None:
    job = make_job(enqueued_at=1000.0, ttl_s=60)
    assert expires_at(job) == 1060.0
    assert not is_expired(job, 1000.0)
    assert not is_expired(job, 1059.999)
    assert is_expired(job, 1060.0)
    assert is_expired(job, 5000.0)


def test_only_queued_jobs_expire() -> None:
    for status in (S.RUNNING, S.COMPLETED, S.FAILED):
        assert not is_expired(make_job(status=status, enqueued_at=0.0, ttl_s=60), 10_000.0)


def test_lease_expiry() -> None:
    running = make_job(status=S.RUNNING, attempts=1, lease_until=2000.0)
    assert not lease_expired(running, 1999.9)
    assert lease_expired(running, 2000.0)
    assert lease_expired(running, 2500.0)
    # A lease means something only while the job runs.
    assert not lease_expired(make_job(status=S.QUEUED, lease_until=None), 9999.0)
    assert not lease_expired(make_job(status=S.COMPLETED, lease_until=2000.0), 9999.0)
    assert not lease_expired(make_job(status=S.RUNNING, lease_until=None), 9999.0)


def test_lost_lease_retries_until_the_attempts_are_spent() -> None:
    assert DEFAULT_MAX_ATTEMPTS == 3
    assert on_lease_lost(make_job(status=S.RUNNING, attempts=1)) == (E.RETRY, None)
    assert on_lease_lost(make_job(status=S.RUNNING, attempts=2)) == (E.RETRY, None)
    event, reason = on_lease_lost(make_job(status=S.RUNNING, attempts=3))
    assert event is E.FAIL
    assert reason == attempts_exhausted_reason(3)
    assert reason == (
        "The model worker stopped before finishing the request, 3 times; "
        "the request will not be retried."
    )


def test_max_attempts_is_a_parameter() -> None:
    assert on_lease_lost(make_job(status=S.RUNNING, attempts=1), max_attempts=1)[0] is E.FAIL
    assert on_lease_lost(make_job(status=S.RUNNING, attempts=4), max_attempts=5)[0] is E.RETRY


def test_expired_reason_names_the_setting() -> None:
    assert expired_reason(60) == (
        "The request expired: it was still queued after RequestTTLSeconds (60 s)."
    )
    assert expired_reason(21600.0).endswith("(21600 s).")
