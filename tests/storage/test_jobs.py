from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

from sagehost.core.errors import InvalidRequest
from sagehost.core.job_states import (
    DuplicateJob,
    IllegalJobTransition,
    JobNotFound,
    JobStatus,
    LeaseLost,
)
from sagehost.core.ports import Job, JobStore
from sagehost.storage.jobs import SqliteJobStore

T = TypeVar("T")
S = JobStatus
ACCOUNT = "111122223333"
SRC = Path(__file__).resolve().parents[2] / "src"


def make_job(
    job_id: str,
    *,
    endpoint: str = "ep",
    account: str = ACCOUNT,
    inference_id: str | None = None,
    enqueued_at: float = 1000.0,
    ttl_s: float = 3600,
) -> Job:
    inference_id = inference_id or f"inf-{job_id}"
    return Job(
        job_id=job_id,
        account=account,
        endpoint_name=endpoint,
        inference_id=inference_id,
        input_location=f"s3://in/{job_id}.json",
        output_location=f"s3://out/{inference_id}.out",
        failure_location=f"s3://err/{inference_id}-error.out",
        content_type="application/json",
        accept="application/json",
        custom_attributes="c=1",
        invocation_timeout_s=900,
        ttl_s=ttl_s,
        enqueued_at=enqueued_at,
    )


def with_store(path: Path, body: Callable[[SqliteJobStore], Awaitable[T]], **options: int) -> T:
    async def main() -> T:
        store = SqliteJobStore(path, **options)  # type: ignore[arg-type]
        try:
            return await body(store)
        finally:
            await store.close()

    return asyncio.run(main())


def test_store_satisfies_the_port(tmp_path: Path) -> None:
    async def body(store: SqliteJobStore) -> None:
        port: JobStore = store
        assert await port.get(ACCOUNT, "nope") is None

    with_store(tmp_path / "jobs.db", body)


def test_enqueue_claim_complete(tmp_path: Path) -> None:
    async def body(store: SqliteJobStore) -> None:
        job = make_job("a")
        await store.enqueue(job)
        assert await store.get(ACCOUNT, "a") == job
        assert await store.get("999999999999", "a") is None  # another account's job is not found

        [claimed] = await store.claim(ACCOUNT, "ep", limit=4, lease_s=30, now=1010.0)
        expected = Job(
            **{
                **job.__dict__,
                "status": S.RUNNING,
                "attempts": 1,
                "lease_until": 1040.0,
                "started_at": 1010.0,
            }
        )
        assert claimed == expected
        assert await store.get(ACCOUNT, "a") == expected
        assert await store.claim(ACCOUNT, "ep", limit=4, lease_s=30, now=1011.0) == []

        await store.renew("a", 1070.0, attempt=1)
        assert (await store.get(ACCOUNT, "a")) == Job(
            **{**expected.__dict__, "lease_until": 1070.0}
        )

        done = await store.complete("a", "text/csv", now=1020.0, attempt=1)
        assert done == Job(
            **{
                **expected.__dict__,
                "status": S.COMPLETED,
                "lease_until": None,
                "finished_at": 1020.0,
                "output_content_type": "text/csv",
            }
        )
        assert await store.get(ACCOUNT, "a") == done
        with pytest.raises(IllegalJobTransition) as caught:
            await store.complete("a", "text/csv", now=1021.0)
        assert (caught.value.status, caught.value.event) == (S.COMPLETED, "succeed")

    with_store(tmp_path / "jobs.db", body)


def test_fail_records_the_reason(tmp_path: Path) -> None:
    async def body(store: SqliteJobStore) -> None:
        await store.enqueue(make_job("a"))
        await store.claim(ACCOUNT, "ep", 1, 30, 1001.0)
        failed = await store.fail("a", "ClientError: model said 400", now=1002.0)
        assert (failed.status, failed.failure_reason, failed.finished_at, failed.lease_until) == (
            S.FAILED,
            "ClientError: model said 400",
            1002.0,
            None,
        )
        assert await store.get(ACCOUNT, "a") == failed

    with_store(tmp_path / "jobs.db", body)


def test_errors(tmp_path: Path) -> None:
    async def body(store: SqliteJobStore) -> None:
        await store.enqueue(make_job("a"))
        with pytest.raises(DuplicateJob):
            await store.enqueue(make_job("a"))
        with pytest.raises(JobNotFound):
            await store.complete("missing", None, now=1.0)
        with pytest.raises(IllegalJobTransition):
            await store.complete("a", None, now=1.0)  # still queued
        with pytest.raises(IllegalJobTransition):
            await store.requeue("a", now=1.0)
        with pytest.raises(LeaseLost):
            await store.renew("a", 2000.0)  # nobody holds a queued job
        with pytest.raises(InvalidRequest):
            await store.list(ACCOUNT, next_token="abc")
        with pytest.raises(InvalidRequest):
            await store.list(ACCOUNT, limit=0)

    with_store(tmp_path / "jobs.db", body)


def test_one_failing_operation_does_not_undo_its_batch(tmp_path: Path) -> None:
    async def body(store: SqliteJobStore) -> None:
        await store.enqueue(make_job("dup"))
        results = await asyncio.gather(
            *(store.enqueue(make_job(f"j{i}")) for i in range(50)),
            store.enqueue(make_job("dup")),
            store.enqueue(replace(make_job("broken"), input_location=None)),  # type: ignore[arg-type]
            *(store.enqueue(make_job(f"k{i}")) for i in range(50)),
            return_exceptions=True,
        )
        assert [type(r) for r in results] == (
            [type(None)] * 50 + [DuplicateJob, sqlite3.IntegrityError] + [type(None)] * 50
        )
        assert (await store.backlog(ACCOUNT, "ep"))[S.QUEUED] == 101
        assert await store.get(ACCOUNT, "broken") is None

    with_store(tmp_path / "jobs.db", body)


def test_claim_is_fifo_per_endpoint_and_respects_limit(tmp_path: Path) -> None:
    async def body(store: SqliteJobStore) -> None:
        for i in range(5):
            await store.enqueue(make_job(f"ep-{i}"))
            await store.enqueue(make_job(f"other-{i}", endpoint="other"))
            await store.enqueue(make_job(f"acct-{i}", account="999999999999"))
        first = await store.claim(ACCOUNT, "ep", limit=2, lease_s=30, now=1001.0)
        second = await store.claim(ACCOUNT, "ep", limit=2, lease_s=30, now=1001.0)
        rest = await store.claim(ACCOUNT, "ep", limit=10, lease_s=30, now=1001.0)
        assert [j.job_id for j in first] == ["ep-0", "ep-1"]
        assert [j.job_id for j in second] == ["ep-2", "ep-3"]
        assert [j.job_id for j in rest] == ["ep-4"]
        assert await store.claim(ACCOUNT, "ep", limit=0, lease_s=30, now=1001.0) == []
        assert await store.backlog(ACCOUNT, "other") == {
            S.QUEUED: 5,
            S.RUNNING: 0,
            S.COMPLETED: 0,
            S.FAILED: 0,
        }

    with_store(tmp_path / "jobs.db", body)


def test_concurrent_claims_never_share_a_job(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"

    async def main() -> None:
        # Two stores on one file stand for two processes: only the database serialises them.
        one, two = SqliteJobStore(path), SqliteJobStore(path)
        try:
            await asyncio.gather(*(one.enqueue(make_job(f"j{i:03}")) for i in range(300)))
            batches = await asyncio.gather(
                *(
                    store.claim(ACCOUNT, "ep", limit=7, lease_s=30, now=1001.0)
                    for _ in range(30)
                    for store in (one, two)
                )
            )
            ids = [job.job_id for batch in batches for job in batch]
            assert all(len(batch) <= 7 for batch in batches)
            assert len(ids) == len(set(ids)) == 300
            assert sorted(ids) == [f"j{i:03}" for i in range(300)]
            assert (await two.backlog(ACCOUNT, "ep"))[S.RUNNING] == 300
        finally:
            await one.close()
            await two.close()

    asyncio.run(main())


def test_queued_job_expires_after_its_ttl(tmp_path: Path) -> None:
    async def body(store: SqliteJobStore) -> None:
        await store.enqueue(make_job("old", enqueued_at=1000.0, ttl_s=60))
        await store.enqueue(make_job("young", enqueued_at=1030.0, ttl_s=60))
        await store.enqueue(make_job("running", enqueued_at=1000.0, ttl_s=60, endpoint="b"))
        await store.claim(ACCOUNT, "b", 1, lease_s=600, now=1001.0)

        assert await store.expire_queued(now=1059.0) == []
        # An expired job is never handed out, even before expire_queued has run.
        [claimed] = await store.claim(ACCOUNT, "ep", limit=5, lease_s=30, now=1060.0)
        assert claimed.job_id == "young"
        await store.requeue("young", now=1061.0)

        expired = await store.expire_queued(now=1060.0)
        assert [(j.job_id, j.status, j.finished_at, j.failure_reason) for j in expired] == [
            (
                "old",
                S.FAILED,
                1060.0,
                "The request expired: it was still queued after RequestTTLSeconds (60 s).",
            )
        ]
        assert await store.get(ACCOUNT, "old") == expired[0]
        # TTL counts from the first enqueue: the retried job expires on its original deadline.
        [young] = await store.expire_queued(now=1090.0)
        assert (young.job_id, young.attempts) == ("young", 1)
        assert (await store.get(ACCOUNT, "running")).status is S.RUNNING  # type: ignore[union-attr]
        assert await store.backlog(ACCOUNT, "ep") == {
            S.QUEUED: 0,
            S.RUNNING: 0,
            S.COMPLETED: 0,
            S.FAILED: 2,
        }

    with_store(tmp_path / "jobs.db", body)


def test_expire_queued_is_bounded_per_call(tmp_path: Path) -> None:
    async def body(store: SqliteJobStore) -> None:
        await asyncio.gather(*(store.enqueue(make_job(f"j{i}", ttl_s=60)) for i in range(5)))
        assert len(await store.expire_queued(now=2000.0, limit=3)) == 3
        assert len(await store.expire_queued(now=2000.0, limit=3)) == 2
        assert await store.expire_queued(now=2000.0, limit=3) == []

    with_store(tmp_path / "jobs.db", body)


def test_recover_retries_lost_leases_until_the_attempts_are_spent(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"

    async def first_life(store: SqliteJobStore) -> None:
        await store.enqueue(make_job("a"))
        await store.enqueue(make_job("b"))
        await store.claim(ACCOUNT, "ep", limit=2, lease_s=30, now=1000.0)
        await store.renew("b", 2000.0)

    with_store(path, first_life, max_attempts=2)

    async def second_life(store: SqliteJobStore) -> None:
        # The server restarted. "a"'s lease ran out at 1030; "b" was renewed to 2000.
        assert await store.recover(now=1029.0) == []
        [a] = await store.recover(now=1030.0)
        assert (a.job_id, a.status, a.attempts, a.lease_until, a.failure_reason) == (
            "a",
            S.QUEUED,
            1,
            None,
            None,
        )
        [again] = await store.claim(ACCOUNT, "ep", limit=5, lease_s=30, now=1031.0)
        assert (again.job_id, again.attempts, again.lease_until) == ("a", 2, 1061.0)
        # The first runner's claim is void now: it cannot finish the job.
        with pytest.raises(LeaseLost):
            await store.complete("a", None, now=1032.0, attempt=1)
        [gave_up] = await store.recover(now=1061.0)
        assert (gave_up.job_id, gave_up.status, gave_up.finished_at) == ("a", S.FAILED, 1061.0)
        assert gave_up.failure_reason == (
            "The model worker stopped before finishing the request, 2 times; "
            "the request will not be retried."
        )
        assert (await store.get(ACCOUNT, "b")).status is S.RUNNING  # type: ignore[union-attr]

    with_store(path, second_life, max_attempts=2)

    async def third_life(store: SqliteJobStore) -> None:
        # At startup no runner is alive, so "b" is taken back although its lease says 2000.
        assert await store.recover(now=1100.0) == []
        [b] = await store.recover(now=1100.0, startup=True)
        assert (b.job_id, b.status, b.attempts, b.lease_until) == ("b", S.QUEUED, 1, None)
        assert await store.recover(now=1100.0, startup=True) == []

    with_store(path, third_life, max_attempts=2)


def test_requeue_applies_the_attempts_cap(tmp_path: Path) -> None:
    async def body(store: SqliteJobStore) -> None:
        await store.enqueue(make_job("a"))
        statuses = []
        for attempt in (1, 2, 3):
            [claimed] = await store.claim(ACCOUNT, "ep", 1, 30, now=1000.0 + attempt)
            assert claimed.attempts == attempt
            statuses.append(
                (await store.requeue("a", now=1000.5 + attempt, attempt=attempt)).status
            )
        assert statuses == [S.QUEUED, S.QUEUED, S.FAILED]
        assert await store.claim(ACCOUNT, "ep", 1, 30, now=1010.0) == []

    with_store(tmp_path / "jobs.db", body)


def test_purge_forgets_only_jobs_finished_before_the_cutoff(tmp_path: Path) -> None:
    async def body(store: SqliteJobStore) -> None:
        for job_id in "abcdef":
            await store.enqueue(make_job(job_id))
        claimed = await store.claim(ACCOUNT, "ep", limit=5, lease_s=600, now=1001.0)
        assert [job.job_id for job in claimed] == ["a", "b", "c", "d", "e"]
        await store.complete("a", "text/plain", now=1010.0)
        await store.fail("b", "ClientError", now=1020.0)
        await store.complete("c", "text/plain", now=1030.0)
        await store.fail("d", "ClientError", now=1040.0)
        # e is Running and f Queued: never purged, however old.
        assert await store.purge_finished(1035.0, limit=2) == 2  # the two oldest first
        assert [await store.get(ACCOUNT, j) is None for j in "abcdef"] == [
            True,
            True,
            False,
            False,
            False,
            False,
        ]
        assert await store.purge_finished(1035.0) == 1  # c; d finished after the cutoff
        assert await store.purge_finished(1035.0) == 0
        remaining = {j: (await store.get(ACCOUNT, j)) for j in "cdef"}
        assert {j: job.status if job else None for j, job in remaining.items()} == {
            "c": None,
            "d": S.FAILED,
            "e": S.RUNNING,
            "f": S.QUEUED,
        }
        assert await store.purge_finished(10_000.0) == 1  # d
        assert (await store.backlog(ACCOUNT, "ep"))[S.RUNNING] == 1

    with_store(tmp_path / "jobs.db", body)


def test_list_pages_newest_first_and_filters(tmp_path: Path) -> None:
    async def body(store: SqliteJobStore) -> None:
        for i in range(25):
            await store.enqueue(make_job(f"j{i:02}", endpoint="ep" if i % 5 else "five"))
        await store.claim(ACCOUNT, "ep", limit=3, lease_s=30, now=1001.0)  # j01, j02, j03

        seen, token, pages = [], None, 0
        while True:
            page = await store.list(ACCOUNT, limit=10, next_token=token)
            seen += [j.job_id for j in page.jobs]
            pages += 1
            token = page.next_token
            if token is None:
                break
        assert pages == 3
        assert seen == [f"j{i:02}" for i in reversed(range(25))]

        exact = await store.list(ACCOUNT, limit=5, endpoint_name="five")
        assert [j.job_id for j in exact.jobs] == ["j20", "j15", "j10", "j05", "j00"]
        assert exact.next_token is None  # a full last page says there is no more
        running = await store.list(ACCOUNT, endpoint_name="ep", status=S.RUNNING, limit=2)
        assert [j.job_id for j in running.jobs] == ["j03", "j02"]
        rest = await store.list(
            ACCOUNT, endpoint_name="ep", status=S.RUNNING, limit=2, next_token=running.next_token
        )
        assert ([j.job_id for j in rest.jobs], rest.next_token) == (["j01"], None)
        assert (await store.list("999999999999")).jobs == []

    with_store(tmp_path / "jobs.db", body)


def test_find_by_repeated_inference_id(tmp_path: Path) -> None:
    async def body(store: SqliteJobStore) -> None:
        await store.enqueue(make_job("first", inference_id="same"))
        await store.enqueue(make_job("second", inference_id="same"))
        await store.enqueue(make_job("elsewhere", inference_id="same", endpoint="other"))
        found = await store.find(ACCOUNT, "ep", "same")
        assert [j.job_id for j in found] == ["second", "first"]
        assert await store.find(ACCOUNT, "ep", "unknown") == []

    with_store(tmp_path / "jobs.db", body)


def test_backlog_counts_each_status(tmp_path: Path) -> None:
    async def body(store: SqliteJobStore) -> None:
        await asyncio.gather(*(store.enqueue(make_job(f"j{i}")) for i in range(10)))
        claimed = await store.claim(ACCOUNT, "ep", limit=4, lease_s=30, now=1001.0)
        await store.complete(claimed[0].job_id, "text/plain", now=1002.0)
        await store.fail(claimed[1].job_id, "boom", now=1002.0)
        assert await store.backlog(ACCOUNT, "ep") == {
            S.QUEUED: 6,
            S.RUNNING: 2,
            S.COMPLETED: 1,
            S.FAILED: 1,
        }
        assert await store.backlog(ACCOUNT, "none") == dict.fromkeys(S, 0)

    with_store(tmp_path / "jobs.db", body)


def test_a_thousand_concurrent_enqueues_all_land(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"

    async def body(store: SqliteJobStore) -> None:
        await asyncio.gather(*(store.enqueue(make_job(f"j{i:04}")) for i in range(1000)))
        assert (await store.backlog(ACCOUNT, "ep"))[S.QUEUED] == 1000

    with_store(path, body)

    async def reopened(store: SqliteJobStore) -> list[str]:
        page = await store.list(ACCOUNT, limit=1000)
        assert page.next_token is None
        return [j.job_id for j in page.jobs]

    assert sorted(with_store(path, reopened)) == [f"j{i:04}" for i in range(1000)]


def test_closed_store_refuses_work(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteJobStore(tmp_path / "jobs.db")
        await store.close()
        await store.close()  # twice is harmless
        with pytest.raises(RuntimeError):
            await store.enqueue(make_job("a"))

    asyncio.run(main())


CHILD = """
import asyncio, sys
from pathlib import Path
from sagehost.core.ports import Job
from sagehost.storage.jobs import SqliteJobStore

async def main():
    store = SqliteJobStore(Path(sys.argv[1]))

    async def producer(n):
        for i in range(1_000_000):
            job_id = f"{n}-{i}"
            await store.enqueue(Job(
                job_id=job_id, account="111122223333", endpoint_name="ep", inference_id=job_id,
                input_location="s3://in/x", output_location="s3://out/x", failure_location=None,
                content_type=None, accept=None, custom_attributes=None,
                invocation_timeout_s=900, ttl_s=3600, enqueued_at=1000.0,
            ))
            sys.stdout.write(job_id + "\\n")
            sys.stdout.flush()

    await asyncio.gather(*(producer(n) for n in range(16)))

asyncio.run(main())
"""


def test_enqueued_jobs_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, env=env
    )
    assert child.stdout is not None
    acknowledged: list[str] = []
    try:
        # Kill while the other producers still have writes in flight.
        while len(acknowledged) < 500:
            line = child.stdout.readline()
            assert line, f"child exited with {child.wait()}"
            acknowledged.append(line.decode().strip())
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    async def body(store: SqliteJobStore) -> set[str]:
        page = await store.list(ACCOUNT, limit=1000)
        found = {j.job_id for j in page.jobs}
        while page.next_token is not None:
            page = await store.list(ACCOUNT, limit=1000, next_token=page.next_token)
            found |= {j.job_id for j in page.jobs}
        return found

    found = with_store(path, body)
    assert set(acknowledged) <= found
    assert len(acknowledged) == 500
