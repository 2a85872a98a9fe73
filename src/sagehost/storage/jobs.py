"""SQLite-backed :class:`~sagehost.core.ports.JobStore`: async jobs survive a crash or restart.

Durability. An ``enqueue`` returns only after its transaction committed. The database runs
in WAL mode with ``synchronous=FULL`` by default, so each commit also fsyncs the WAL and a job
the client was told about (202) survives power loss, not only the SIGKILL of the server that
the requirement names (``NORMAL`` would be enough for that: a committed WAL frame is in the OS
page cache once ``write`` returns). FULL is affordable because of group commit: the fsync is paid
once per batch, not per job. ``synchronous="NORMAL"`` is accepted for disks where fsync is slow.

Threads. SQLite calls block, so none run on the event loop. One writer thread owns the only
writing connection: it drains a queue of pending operations, runs each batch in a single
``BEGIN IMMEDIATE … COMMIT``, then settles the callers' futures with one
``call_soon_threadsafe`` per event loop. A single writer also serialises ``claim``, so no job
goes to two claimers; ``BEGIN IMMEDIATE`` keeps that true if another process shares the file.
Reads run on a second thread with its own connection: WAL lets them proceed while a write
commits, and they see every write whose caller has been answered.

Failures inside a batch. An operation raises a domain error (``DuplicateJob``,
``IllegalJobTransition``, …) only before it writes, and a constraint error comes from one
statement that SQLite has already undone; either way the rest of the batch still commits. Any
other ``sqlite3.Error`` rolls the whole batch back and every caller in it gets the error. (A
savepoint per operation would also isolate them, at a third of the writer's time per insert.)

Queue order is arrival order: ``seq`` grows with each enqueue, and a retried job keeps its
``seq``, so it goes back to the head of its endpoint's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from sagehost.core.errors import InvalidRequest
from sagehost.core.job_states import (
    DEFAULT_MAX_ATTEMPTS,
    DuplicateJob,
    IllegalJobTransition,
    JobEvent,
    JobNotFound,
    JobStatus,
    LeaseLost,
    advance,
    expired_reason,
    expires_at,
    is_expired,
    lease_expired,
    on_lease_lost,
)
from sagehost.core.ports import Job, JobPage

T = TypeVar("T")
Db = sqlite3.Connection

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    account TEXT NOT NULL,
    endpoint_name TEXT NOT NULL,
    inference_id TEXT NOT NULL,
    input_location TEXT NOT NULL,
    output_location TEXT NOT NULL,
    failure_location TEXT,
    content_type TEXT,
    accept TEXT,
    custom_attributes TEXT,
    invocation_timeout_s REAL NOT NULL,
    ttl_s REAL NOT NULL,
    enqueued_at REAL NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    lease_until REAL,
    started_at REAL,
    finished_at REAL,
    failure_reason TEXT,
    output_content_type TEXT,
    expires_at REAL NOT NULL
);
-- claim (status = 'Queued' ORDER BY seq), backlog counts, list by endpoint and status
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (account, endpoint_name, status, seq);
CREATE INDEX IF NOT EXISTS jobs_by_account ON jobs (account, seq);
CREATE INDEX IF NOT EXISTS jobs_by_inference_id ON jobs (account, endpoint_name, inference_id);
CREATE INDEX IF NOT EXISTS jobs_queued_expiry ON jobs (expires_at) WHERE status = 'Queued';
CREATE INDEX IF NOT EXISTS jobs_running_lease ON jobs (lease_until) WHERE status = 'Running';
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at)
    WHERE status IN ('Completed', 'Failed');
"""

_FIELDS = tuple(f.name for f in fields(Job))
_COLUMNS = ", ".join(_FIELDS)
_PLACEHOLDERS = ", ".join("?" * (len(_FIELDS) + 1))
# The SQL built with f-strings below holds only these constant names and clauses written in
# this module; every value is a bound parameter.
_INSERT = f"INSERT INTO jobs ({_COLUMNS}, expires_at) VALUES ({_PLACEHOLDERS})"  # noqa: S608
# Every status change writes these, and only these, columns.
_UPDATE = (
    "UPDATE jobs SET status=?, attempts=?, lease_until=?, started_at=?, finished_at=?,"
    " failure_reason=?, output_content_type=? WHERE job_id=?"
)
_MAX_BATCH = 1000
_MAX_PAGE = 1000


def _job(row: Iterable[Any]) -> Job:
    values = dict(zip(_FIELDS, row, strict=True))
    values["status"] = JobStatus(values["status"])
    return Job(**values)


def _query(db: Db, clause: str, params: Sequence[object]) -> list[tuple[int, Job]]:
    """(seq, job) of the rows matching ``clause`` (a WHERE clause, ORDER BY and LIMIT)."""
    sql = f"SELECT seq, {_COLUMNS} FROM jobs WHERE {clause}"  # noqa: S608
    return [(row[0], _job(row[1:])) for row in db.execute(sql, params)]


def _select(db: Db, clause: str, params: Sequence[object]) -> list[Job]:
    return [job for _, job in _query(db, clause, params)]


def _update_params(job: Job) -> tuple[Any, ...]:
    return (
        job.status.value,
        job.attempts,
        job.lease_until,
        job.started_at,
        job.finished_at,
        job.failure_reason,
        job.output_content_type,
        job.job_id,
    )


@dataclass(slots=True)
class _Op:
    fn: Callable[[Db], object] | None  # None asks the thread to stop
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class _DbThread:
    """A thread that owns one connection and runs submitted operations on it, in order.

    A writer runs each batch in one transaction; a reader runs operations one by one.
    """

    def __init__(self, db: Db, name: str, *, writer: bool) -> None:
        self._db = db
        self._writer = writer
        self._queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def call(self, fn: Callable[[Db], T]) -> T:
        if self._closed:
            raise RuntimeError("the job store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Op(fn, loop, future))
        return cast(T, await future)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Op(None, loop, done))
        await done

    def _run(self) -> None:
        stop: _Op | None = None
        while stop is None:
            batch: list[_Op] = []
            op = self._queue.get()
            while True:
                if op.fn is None:
                    stop = op
                    break
                batch.append(op)
                if len(batch) >= _MAX_BATCH:
                    break
                try:
                    op = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                _settle_all(self._run_batch(batch) if self._writer else self._run_each(batch))
        self._db.close()
        _settle_all([(stop, None, None)])

    def _run_each(self, batch: list[_Op]) -> list[tuple[_Op, object, Exception | None]]:
        results: list[tuple[_Op, object, Exception | None]] = []
        for op in batch:
            assert op.fn is not None
            try:
                results.append((op, op.fn(self._db), None))
            except Exception as exc:
                results.append((op, None, exc))
        return results

    def _run_batch(self, batch: list[_Op]) -> list[tuple[_Op, object, Exception | None]]:
        db = self._db
        results: list[tuple[_Op, object, Exception | None]] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for op in batch:
                assert op.fn is not None
                try:
                    results.append((op, op.fn(db), None))
                except sqlite3.IntegrityError as exc:  # a constraint: SQLite undid the statement
                    results.append((op, None, exc))
                except sqlite3.Error:
                    raise
                except Exception as exc:
                    results.append((op, None, exc))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            # Nothing in the batch was committed, so every caller hears of it.
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            return [(op, None, exc) for op in batch]
        return results


def _settle_all(results: list[tuple[_Op, object, Exception | None]]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Op, object, Exception | None]]] = {}
    for result in results:
        by_loop.setdefault(result[0].loop, []).append(result)
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, items)


def _settle(items: list[tuple[_Op, object, Exception | None]]) -> None:
    for op, value, exc in items:
        if op.future.done():  # the caller was cancelled; the write stands regardless
            continue
        if exc is None:
            op.future.set_result(value)
        else:
            op.future.set_exception(exc)


def _connect(path: Path, synchronous: str, *, read_only: bool) -> Db:
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=10000")
    if read_only:
        db.execute("PRAGMA query_only=ON")
    else:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.executescript(_SCHEMA)
    return db


class SqliteJobStore:
    """``path`` is created if missing. Opening runs the schema on the calling thread, once,
    at startup; every later call runs on the store's own threads."""

    def __init__(
        self,
        path: Path,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._max_attempts = max_attempts
        self._writer = _DbThread(
            _connect(path, synchronous, read_only=False), "sagehost-jobs-writer", writer=True
        )
        self._reader = _DbThread(
            _connect(path, synchronous, read_only=True), "sagehost-jobs-reader", writer=False
        )

    async def close(self) -> None:
        await self._writer.close()
        await self._reader.close()

    # --- writes -----------------------------------------------------------------------------

    async def enqueue(self, job: Job) -> None:
        if job.status is not JobStatus.QUEUED or job.attempts != 0:
            raise ValueError("a new job is Queued with no attempts")
        params = (*(getattr(job, name) for name in _FIELDS), expires_at(job))

        def op(db: Db) -> None:
            try:
                db.execute(_INSERT, params)
            except sqlite3.IntegrityError as exc:
                if "jobs.job_id" in str(exc):
                    raise DuplicateJob(job.job_id) from None
                raise

        await self._writer.call(op)

    async def claim(
        self, account: str, endpoint_name: str, limit: int, lease_s: float, now: float
    ) -> list[Job]:
        if limit <= 0:
            return []

        def op(db: Db) -> list[Job]:
            queued = _select(
                db,
                "account=? AND endpoint_name=? AND status='Queued' AND expires_at>?"
                " ORDER BY seq LIMIT ?",
                (account, endpoint_name, now, limit),
            )
            claimed = [
                replace(
                    job,
                    status=advance(job.status, JobEvent.CLAIM),
                    attempts=job.attempts + 1,
                    lease_until=now + lease_s,
                    started_at=now,
                )
                for job in queued
            ]
            db.executemany(_UPDATE, map(_update_params, claimed))
            return claimed

        return await self._writer.call(op)

    async def renew(self, job_id: str, lease_until: float, *, attempt: int | None = None) -> None:
        def op(db: Db) -> None:
            job = _load(db, job_id, attempt)
            if job.status is not JobStatus.RUNNING:
                raise LeaseLost(job_id, job.attempts if attempt is None else attempt, job.attempts)
            db.execute("UPDATE jobs SET lease_until=? WHERE job_id=?", (lease_until, job_id))

        await self._writer.call(op)

    async def complete(
        self,
        job_id: str,
        output_content_type: str | None,
        now: float,
        *,
        attempt: int | None = None,
    ) -> Job:
        def change(job: Job) -> Job:
            return replace(
                job,
                status=advance(job.status, JobEvent.SUCCEED),
                lease_until=None,
                finished_at=now,
                output_content_type=output_content_type,
            )

        return await self._writer.call(lambda db: _write(db, change(_load(db, job_id, attempt))))

    async def fail(
        self, job_id: str, reason: str, now: float, *, attempt: int | None = None
    ) -> Job:
        def change(job: Job) -> Job:
            return _failed(job, JobEvent.FAIL, reason, now)

        return await self._writer.call(lambda db: _write(db, change(_load(db, job_id, attempt))))

    async def requeue(self, job_id: str, now: float, *, attempt: int | None = None) -> Job:
        def change(job: Job) -> Job:
            if job.status is not JobStatus.RUNNING:
                raise IllegalJobTransition(job.status, JobEvent.RETRY)
            return self._after_lost_lease(job, now)

        return await self._writer.call(lambda db: _write(db, change(_load(db, job_id, attempt))))

    async def expire_queued(self, now: float, *, limit: int = 1000) -> list[Job]:
        """At most ``limit`` jobs per call (one bounded transaction); call again while the
        answer is full."""

        def op(db: Db) -> list[Job]:
            queued = _select(
                db, "status='Queued' AND expires_at<=? ORDER BY expires_at LIMIT ?", (now, limit)
            )
            expired = [
                _failed(job, JobEvent.EXPIRE, expired_reason(job.ttl_s), now)
                for job in queued
                if is_expired(job, now)
            ]
            db.executemany(_UPDATE, map(_update_params, expired))
            return expired

        return await self._writer.call(op)

    async def recover(self, now: float, *, startup: bool = False, limit: int = 1000) -> list[Job]:
        """At most ``limit`` jobs per call; call again while the answer is full."""
        clause = "status='Running' AND lease_until<=? ORDER BY lease_until LIMIT ?"
        params: tuple[object, ...] = (now, limit)
        if startup:  # nobody can hold a lease yet, however long it had to run
            clause, params = "status='Running' ORDER BY seq LIMIT ?", (limit,)

        def op(db: Db) -> list[Job]:
            changed = [
                self._after_lost_lease(job, now)
                for job in _select(db, clause, params)
                if startup or lease_expired(job, now)
            ]
            db.executemany(_UPDATE, map(_update_params, changed))
            return changed

        return await self._writer.call(op)

    async def purge_finished(self, before: float, *, limit: int = 1000) -> int:
        """Forget at most ``limit`` Completed or Failed jobs that finished before ``before``
        (their results stay where they were written); returns how many."""

        def op(db: Db) -> int:
            cursor = db.execute(
                "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE status IN "
                "('Completed', 'Failed') AND finished_at<? ORDER BY finished_at LIMIT ?)",
                (before, limit),
            )
            return cursor.rowcount

        return await self._writer.call(op)

    def _after_lost_lease(self, job: Job, now: float) -> Job:
        event, reason = on_lease_lost(job, self._max_attempts)
        if reason is not None:
            return _failed(job, event, reason, now)
        return replace(job, status=advance(job.status, event), lease_until=None)

    # --- reads ------------------------------------------------------------------------------

    async def get(self, account: str, job_id: str) -> Job | None:
        def op(db: Db) -> Job | None:
            jobs = _select(db, "job_id=? AND account=?", (job_id, account))
            return jobs[0] if jobs else None

        return await self._reader.call(op)

    async def find(self, account: str, endpoint_name: str, inference_id: str) -> list[Job]:
        def op(db: Db) -> list[Job]:
            return _select(
                db,
                "account=? AND endpoint_name=? AND inference_id=? ORDER BY seq DESC",
                (account, endpoint_name, inference_id),
            )

        return await self._reader.call(op)

    async def backlog(self, account: str, endpoint_name: str) -> dict[JobStatus, int]:
        def op(db: Db) -> dict[JobStatus, int]:
            counts = dict.fromkeys(JobStatus, 0)
            for status, count in db.execute(
                "SELECT status, count(*) FROM jobs WHERE account=? AND endpoint_name=?"
                " GROUP BY status",
                (account, endpoint_name),
            ):
                counts[JobStatus(status)] = count
            return counts

        return await self._reader.call(op)

    # After every method annotated ``list[...]``: in this class body ``list`` is this method.
    async def list(
        self,
        account: str,
        endpoint_name: str | None = None,
        status: JobStatus | None = None,
        limit: int = 100,
        next_token: str | None = None,
    ) -> JobPage:
        if not 1 <= limit <= _MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {_MAX_PAGE}.")
        where: list[str] = ["account=?"]
        params: list[str | int] = [account]
        if endpoint_name is not None:
            where.append("endpoint_name=?")
            params.append(endpoint_name)
        if status is not None:
            where.append("status=?")
            params.append(status.value)
        if next_token is not None:
            if not next_token.isdigit() or len(next_token) > 19:
                raise InvalidRequest("The pagination token is not valid.")
            where.append("seq<?")
            params.append(int(next_token))
        clause = f"{' AND '.join(where)} ORDER BY seq DESC LIMIT ?"

        def op(db: Db) -> JobPage:
            rows = _query(db, clause, (*params, limit + 1))
            more = len(rows) > limit
            rows = rows[:limit]
            return JobPage(
                jobs=[job for _, job in rows], next_token=str(rows[-1][0]) if more else None
            )

        return await self._reader.call(op)


def _load(db: Db, job_id: str, attempt: int | None) -> Job:
    jobs = _select(db, "job_id=?", (job_id,))
    if not jobs:
        raise JobNotFound(job_id)
    job = jobs[0]
    if attempt is not None and attempt != job.attempts:
        raise LeaseLost(job_id, attempt, job.attempts)
    return job


def _write(db: Db, job: Job) -> Job:
    db.execute(_UPDATE, _update_params(job))
    return job


def _failed(job: Job, event: JobEvent, reason: str, now: float) -> Job:
    return replace(
        job,
        status=advance(job.status, event),
        lease_until=None,
        finished_at=now,
        failure_reason=reason,
    )
