"""The async inference service: what the gateway calls to submit jobs and read their state."""

from __future__ import annotations

from typing import Any

from sagehost.core.errors import InvalidRequest
from sagehost.core.invocation import AsyncAccepted, AsyncInput, Caller
from sagehost.core.job_states import JobStatus
from sagehost.core.live import EndpointDirectory
from sagehost.core.ports import Clock, Job, JobStore
from sagehost.jobs.runner import JobRunner
from sagehost.jobs.submit import error_location, submit

MAX_LIST = 100


class AsyncInference:
    def __init__(
        self, store: JobStore, runner: JobRunner, directory: EndpointDirectory, clock: Clock
    ) -> None:
        self._store = store
        self._runner = runner
        self._directory = directory
        self._clock = clock

    async def submit(self, caller: Caller, request: AsyncInput) -> AsyncAccepted:
        accepted = await submit(self._directory, self._store, self._clock, caller, request)
        self._runner.wake()
        return accepted

    async def describe(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        """``SageHost.DescribeAsyncInference``: one job by endpoint and InferenceId."""
        endpoint = _string(params, "EndpointName")
        inference_id = _string(params, "InferenceId")
        jobs = await self._store.find(caller.account, endpoint, inference_id)
        if not jobs:
            raise InvalidRequest(
                f"No async inference {inference_id} for endpoint {endpoint} of account {caller.account}."
            )
        backlog = await self._store.backlog(caller.account, jobs[0].endpoint_name)
        return {"Job": job_view(jobs[0]), "Backlog": _backlog_view(backlog)}

    async def list_jobs(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        """``SageHost.ListAsyncInferences``: the account's jobs, newest first, paginated."""
        endpoint = params.get("EndpointName")
        status_name = params.get("StatusEquals")
        try:
            status = JobStatus(status_name) if status_name else None
        except ValueError:
            raise InvalidRequest(
                f"StatusEquals must be one of {', '.join(s.value for s in JobStatus)}."
            ) from None
        limit = params.get("MaxResults", MAX_LIST)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
            raise InvalidRequest(f"MaxResults must be an integer from 1 to {MAX_LIST}.")
        page = await self._store.list(
            caller.account,
            endpoint_name=str(endpoint) if endpoint else None,
            status=status,
            limit=limit,
            next_token=params.get("NextToken"),
        )
        out: dict[str, Any] = {"Jobs": [job_view(job) for job in page.jobs]}
        if endpoint:
            out["Backlog"] = _backlog_view(await self._store.backlog(caller.account, str(endpoint)))
        if page.next_token:
            out["NextToken"] = page.next_token
        return out


def job_view(job: Job) -> dict[str, Any]:
    view: dict[str, Any] = {
        "InferenceId": job.inference_id,
        "EndpointName": job.endpoint_name,
        "Status": job.status.value,
        "InputLocation": job.input_location,
        "OutputLocation": job.output_location,
        "EnqueuedTime": job.enqueued_at,
        "Attempts": job.attempts,
    }
    if job.status is JobStatus.FAILED:
        view["FailureLocation"] = error_location(job)
        view["FailureReason"] = job.failure_reason
    elif job.failure_location is not None:
        view["FailureLocation"] = job.failure_location
    if job.started_at is not None:
        view["StartTime"] = job.started_at
    if job.finished_at is not None:
        view["EndTime"] = job.finished_at
    if job.output_content_type is not None:
        view["OutputContentType"] = job.output_content_type
    return view


def _backlog_view(backlog: dict[JobStatus, int]) -> dict[str, int]:
    return {status.value: count for status, count in backlog.items()}


def _string(params: dict[str, Any], key: str) -> str:
    value = params.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{key} is required.")
    return value
