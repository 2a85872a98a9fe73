"""The job runner in-process with a real SQLite store and file outputs, and a fake clock:
the TTL (60 s at least) is reached by moving the clock, not by waiting."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sagehost.core.endpoint_states import EndpointStatus
from sagehost.core.invocation import AsyncInput, Caller
from sagehost.core.job_states import JobStatus
from sagehost.core.live import EndpointDirectory, LiveEndpoint
from sagehost.jobs.runner import JobRunner
from sagehost.jobs.service import AsyncInference
from sagehost.storage.jobs import SqliteJobStore
from sagehost.storage.objects import UrlObjectStore
from sagehost.testing.fakes import FakeClock, NoInstances, RecordingNotifier

CALLER = Caller("000000000000", "us-east-1")


def test_a_job_queued_past_its_ttl_fails_with_its_error_written_and_published(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        notifier = RecordingNotifier()
        directory = EndpointDirectory()
        directory.put(
            LiveEndpoint(
                account=CALLER.account,
                name="ep",
                region="us-east-1",
                status=EndpointStatus.IN_SERVICE,
                async_inference=True,
                async_config={
                    "OutputConfig": {
                        "S3OutputPath": (tmp_path / "out").as_uri(),
                        "S3FailurePath": (tmp_path / "err").as_uri(),
                        "NotificationConfig": {"ErrorTopic": "https://hooks.example/errors"},
                    }
                },
            )
        )
        runner = JobRunner(
            store=store,
            objects=UrlObjectStore(),
            notifier=notifier,
            models=NoInstances(),
            directory=directory,
            clock=clock,
            poll_s=0.01,
        )
        service = AsyncInference(store, runner, directory, clock)
        await runner.start()
        try:
            accepted = await service.submit(
                CALLER,
                AsyncInput(
                    endpoint_name="ep", input_location="s3://b/k", inference_id="late", ttl_s=60
                ),
            )
            clock.advance(59)
            await asyncio.sleep(0.1)
            assert (await store.find(CALLER.account, "ep", "late"))[0].status is JobStatus.QUEUED
            clock.advance(2)
            for _ in range(200):
                job = (await store.find(CALLER.account, "ep", "late"))[0]
                if job.status is JobStatus.FAILED and len(notifier.published) == 2:
                    break
                await asyncio.sleep(0.01)
            assert job.status is JobStatus.FAILED
            assert job.failure_reason is not None and "60" in job.failure_reason
            assert accepted.failure_location == (tmp_path / "err" / "late-error.out").as_uri()
            assert (tmp_path / "err" / "late-error.out").read_text() == job.failure_reason
            # First the TestNotification of an endpoint going into service, then the failure.
            assert [topic for topic, _ in notifier.published] == [
                "https://hooks.example/errors"
            ] * 2
            assert json.loads(notifier.published[0][1]) == {
                "eventVersion": "1.0",
                "eventSource": "aws:sagemaker",
                "eventName": "TestNotification",
            }
            body = json.loads(notifier.published[1][1])
            assert body["invocationStatus"] == "Failed"
            assert body["inferenceId"] == "late"
            assert body["failureReason"] == job.failure_reason
            assert body["responseParameters"] == {"failureLocation": accepted.failure_location}
        finally:
            await runner.stop()
            await store.close()

    asyncio.run(scenario())
