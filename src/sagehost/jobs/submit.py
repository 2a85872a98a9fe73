"""Accepting InvokeEndpointAsync: check the endpoint, name the outputs, record the job durably."""

from __future__ import annotations

import uuid

from sagehost.core.endpoint_states import INVOCABLE
from sagehost.core.errors import EndpointNotFound, InvalidRequest
from sagehost.core.invocation import AsyncAccepted, AsyncInput, Caller
from sagehost.core.live import EndpointDirectory
from sagehost.core.locations import join_location
from sagehost.core.ports import Clock, Job, JobStore

INPUT_SCHEMES = ("s3://", "https://", "file://")


def output_locations(
    config: dict[str, object], inference_id: str, extension: str | None, filename: str | None
) -> tuple[str, str | None]:
    """Where the result and the error of a job go (§5.3; the naming is sagehost's reading of it).

    Without an ``S3FailurePath`` an error goes beside the results as ``<id>-error.out``, and no
    FailureLocation is announced.
    """
    output = config.get("OutputConfig") or {}
    assert isinstance(output, dict)
    success = join_location(
        str(output["S3OutputPath"]), extension or "", filename or f"{inference_id}.out"
    )
    failure_base = output.get("S3FailurePath")
    failure = (
        join_location(str(failure_base), extension or "", f"{inference_id}-error.out")
        if failure_base
        else None
    )
    return success, failure


def error_location(job: Job) -> str:
    if job.failure_location is not None:
        return job.failure_location
    base, _, _ = job.output_location.rpartition("/")
    return f"{base}/{job.inference_id}-error.out"


async def submit(
    directory: EndpointDirectory, store: JobStore, clock: Clock, caller: Caller, request: AsyncInput
) -> AsyncAccepted:
    endpoint = directory.get(caller.account, request.endpoint_name)
    if endpoint is None:
        raise EndpointNotFound(request.endpoint_name, caller.account)
    if endpoint.status not in INVOCABLE:
        raise InvalidRequest(
            f"Endpoint {endpoint.name} of account {caller.account} is not ready for invocations: "
            f"its status is {endpoint.status.value}."
        )
    if not endpoint.async_inference or endpoint.async_config is None:
        raise InvalidRequest(
            f"Endpoint {endpoint.name} of account {caller.account} is a real-time endpoint; "
            "use InvokeEndpoint."
        )
    if not request.input_location.startswith(INPUT_SCHEMES):
        raise InvalidRequest(
            f"InputLocation {request.input_location} must be an s3://, https:// or file:// URL."
        )
    inference_id = request.inference_id or str(uuid.uuid4())
    output, failure = output_locations(
        endpoint.async_config, inference_id, request.output_path_extension, request.filename
    )
    job = Job(
        job_id=uuid.uuid4().hex,
        account=caller.account,
        endpoint_name=endpoint.name,
        inference_id=inference_id,
        input_location=request.input_location,
        output_location=output,
        failure_location=failure,
        content_type=request.content_type,
        accept=request.accept,
        custom_attributes=request.custom_attributes,
        invocation_timeout_s=float(request.invocation_timeout_s),
        ttl_s=float(request.ttl_s),
        enqueued_at=clock.time(),
    )
    await store.enqueue(job)  # durable before we answer
    return AsyncAccepted(inference_id, output, failure)
