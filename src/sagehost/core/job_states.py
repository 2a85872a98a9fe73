"""The async job status machine: the one place that decides which status follows which.

What may change a job's status, and where:

- ``JobStore.enqueue`` creates a job as ``Queued`` (the only way a job comes to exist).
- ``JobStore.claim`` (the runner taking work): ``Queued`` → ``Running`` (CLAIM).
- ``JobStore.complete`` / ``JobStore.fail`` (the runner, after the container answered):
  ``Running`` → ``Completed`` (SUCCEED) or ``Failed`` (FAIL).
- ``JobStore.requeue`` (the runner lost its worker) and ``JobStore.recover`` (startup: leases
  nobody holds any more): ``Running`` → ``Queued`` (RETRY) or, once :func:`on_lease_lost` says
  the attempts are spent, ``Failed`` (FAIL).
- ``JobStore.expire_queued``: ``Queued`` → ``Failed`` (EXPIRE) once :func:`is_expired`.

Every store method loads the row, asks :func:`advance`, and writes the answer in one
transaction; nothing else writes a status. Transitions marked (sagehost) are our own choices
where AWS documents none. Rules take ``now`` as an argument: this module reads no clock.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sagehost.core.ports import Job

DEFAULT_MAX_ATTEMPTS = 3


class JobStatus(StrEnum):
    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


class JobEvent(StrEnum):
    CLAIM = "claim"  # a runner took the job and holds a lease on it
    SUCCEED = "succeed"  # the output was written
    FAIL = "fail"  # the model or a dependency failed, or the attempts ran out
    RETRY = "retry"  # the lease was lost (worker or server died); run it again
    EXPIRE = "expire"  # still queued when RequestTTLSeconds ran out


S = JobStatus
E = JobEvent

_TRANSITIONS: dict[tuple[JobStatus, JobEvent], JobStatus] = {
    (S.QUEUED, E.CLAIM): S.RUNNING,
    (S.QUEUED, E.EXPIRE): S.FAILED,
    # (sagehost) a queued job may fail without running, e.g. when its endpoint is deleted.
    (S.QUEUED, E.FAIL): S.FAILED,
    (S.RUNNING, E.SUCCEED): S.COMPLETED,
    (S.RUNNING, E.FAIL): S.FAILED,
    (S.RUNNING, E.RETRY): S.QUEUED,
}

FINISHED = frozenset({S.COMPLETED, S.FAILED})


class IllegalJobTransition(Exception):
    def __init__(self, status: JobStatus, event: JobEvent) -> None:
        super().__init__(f"{event.value} is not allowed while the job is {status.value}")
        self.status = status
        self.event = event


class JobNotFound(Exception):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id}")
        self.job_id = job_id


class DuplicateJob(Exception):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} exists already")
        self.job_id = job_id


class LeaseLost(Exception):
    """The caller's claim on a job is void: the job was requeued and claimed again, or finished.

    Delivery is at least once, so a runner that sees this drops the job without writing status.
    """

    def __init__(self, job_id: str, attempt: int, current: int) -> None:
        super().__init__(f"job {job_id}: attempt {attempt} no longer holds it (now {current})")
        self.job_id = job_id
        self.attempt = attempt
        self.current = current


def advance(status: JobStatus, event: JobEvent) -> JobStatus:
    """The status after ``event``; raises :class:`IllegalJobTransition` if it cannot happen now."""
    try:
        return _TRANSITIONS[(status, event)]
    except KeyError:
        raise IllegalJobTransition(status, event) from None


def expires_at(job: Job) -> float:
    """When a job still queued stops being worth running: enqueue time plus its TTL."""
    return job.enqueued_at + job.ttl_s


def is_expired(job: Job, now: float) -> bool:
    """A queued job whose ``RequestTTLSeconds`` has fully elapsed. TTL counts from the first
    enqueue, so a job retried after a lost lease keeps its original deadline."""
    return job.status is S.QUEUED and now >= expires_at(job)


def lease_expired(job: Job, now: float) -> bool:
    """A running job whose runner stopped renewing: nobody is working on it any more."""
    return job.status is S.RUNNING and job.lease_until is not None and now >= job.lease_until


def on_lease_lost(
    job: Job, max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> tuple[JobEvent, str | None]:
    """What to do with a running job whose worker died: RETRY while attempts remain, else FAIL
    with the reason to record. ``job.attempts`` counts claims, the lost one included."""
    if job.attempts < max_attempts:
        return E.RETRY, None
    return E.FAIL, attempts_exhausted_reason(job.attempts)


def attempts_exhausted_reason(attempts: int) -> str:
    return (
        f"The model worker stopped before finishing the request, {attempts} times; "
        "the request will not be retried."
    )


def expired_reason(ttl_s: float) -> str:
    # AWS's exact text is unconfirmed (spec §5.3); this names the setting a caller can change.
    return f"The request expired: it was still queued after RequestTTLSeconds ({ttl_s:g} s)."
