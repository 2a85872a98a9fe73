"""Benchmark durable enqueue into the SQLite job store (group commit).

Each run opens a fresh store in a temporary directory, starts ``concurrency`` tasks that each
enqueue jobs back to back for ``--seconds``, and counts the enqueues that returned, each of
which was committed (and, with ``synchronous=FULL``, fsynced) before it returned. Runs of the
different concurrencies alternate; the report gives the median rate of the runs with its range,
and the median per-enqueue latency (p50/p99) over the runs.

Usage::

    python bench/enqueue.py --runs 5 --seconds 2 --concurrency 1 16 64 --synchronous FULL
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Literal

from sagehost.core.ports import Job
from sagehost.storage.jobs import SqliteJobStore


def new_job(now: float) -> Job:
    job_id = uuid.uuid4().hex
    return Job(
        job_id=job_id,
        account="111122223333",
        endpoint_name="bench",
        inference_id=job_id,
        input_location="s3://bench-in/payload.json",
        output_location=f"s3://bench-out/{job_id}.out",
        failure_location=f"s3://bench-err/{job_id}-error.out",
        content_type="application/json",
        accept="application/json",
        custom_attributes=None,
        invocation_timeout_s=900,
        ttl_s=21600,
        enqueued_at=now,
    )


async def one_run(
    concurrency: int, seconds: float, synchronous: Literal["FULL", "NORMAL"]
) -> tuple[float, list[float]]:
    """(enqueues per second, each enqueue's latency in seconds)."""
    with tempfile.TemporaryDirectory(prefix="sagehost-bench-") as tmp:
        store = SqliteJobStore(Path(tmp) / "jobs.db", synchronous=synchronous)
        latencies: list[float] = []
        deadline = time.perf_counter() + seconds

        async def producer() -> None:
            while (start := time.perf_counter()) < deadline:
                await store.enqueue(new_job(time.time()))
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        await store.close()
        return len(latencies) / elapsed, latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.install()

    print("$", shlex.join(["python", "bench/enqueue.py", *sys.argv[1:]]))
    rates: dict[int, list[float]] = {c: [] for c in args.concurrency}
    p50s: dict[int, list[float]] = {c: [] for c in args.concurrency}
    p99s: dict[int, list[float]] = {c: [] for c in args.concurrency}
    for _ in range(args.runs):
        for concurrency in args.concurrency:
            rate, latencies = asyncio.run(one_run(concurrency, args.seconds, args.synchronous))
            rates[concurrency].append(rate)
            p50s[concurrency].append(percentile(latencies, 0.50))
            p99s[concurrency].append(percentile(latencies, 0.99))

    print(
        f"SqliteJobStore.enqueue, synchronous={args.synchronous}, loop={args.loop},"
        f" {args.runs} runs x {args.seconds:g} s"
    )
    print("| concurrency | enqueues/s (median) | range | p50 latency | p99 latency |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for c in args.concurrency:
        print(
            f"| {c} | {statistics.median(rates[c]):,.0f} |"
            f" {min(rates[c]):,.0f}-{max(rates[c]):,.0f} |"
            f" {statistics.median(p50s[c]) * 1000:.2f} ms |"
            f" {statistics.median(p99s[c]) * 1000:.2f} ms |"
        )


if __name__ == "__main__":
    main()
