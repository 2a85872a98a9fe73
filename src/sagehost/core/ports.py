"""Interfaces the services depend on. Adapters implement them; ``server.py`` wires them.

Everything here is a ``typing.Protocol`` or a plain frozen dataclass, so services can be
tested against fakes in ``sagehost.testing`` and adapters can be swapped without touching them.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from sagehost.core.job_states import JobStatus


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...


@dataclass(frozen=True)
class ContainerSpec:
    """One container to run, as a model's ``PrimaryContainer`` describes it."""

    image: str
    model_data_url: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    hostname: str = "primary"


@dataclass(frozen=True)
class FleetSpec:
    """The instances of one production variant of one endpoint generation.

    ``key`` is unique per fleet and safe as a path segment; logs and model files live under it.
    """

    key: str
    container: ContainerSpec
    instance_count: int = 1
    startup_timeout_s: float = 240.0
    download_timeout_s: float = 600.0


@dataclass(frozen=True)
class ContainerRequest:
    """A call to a container's ``POST /invocations``; headers are already filtered.

    ``body`` is bytes, or an async iterable streamed to the container chunk by chunk (an async
    job's input, up to 1 GB, is never held whole). A streamed body is sent with
    ``Content-Length: body_length`` when that is known, else chunked; yielding more or fewer
    bytes than ``body_length`` fails the call with ``ValueError``. It can be sent only once, so
    it is never retried. An exception the iterable raises ends the call and propagates
    unchanged: raise one that is not an ``OSError``, or it reads as a connection failure.
    ``timeout_s`` covers sending the body too. The caller owns the iterable (and closes it).
    """

    body: bytes | bytearray | AsyncIterable[bytes]
    headers: Sequence[tuple[str, str]]
    timeout_s: float
    path: str = "/invocations"
    method: str = "POST"  # the multi-model API (§8.4) also uses GET and DELETE
    max_response_bytes: int = 6 * 1024 * 1024  # larger answers raise ContainerResponseTooLarge
    body_length: int | None = None  # of a streamed body, when known; ignored for bytes


@dataclass(frozen=True)
class ContainerResponse:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True)
class ContainerStream:
    """A response whose body is read as it arrives: ``chunks`` yields each piece in order and
    raises ``ContainerTimeout`` or ``ContainerUnreachable`` if the stream breaks."""

    status: int
    headers: Mapping[str, str]  # lower-case names
    chunks: AsyncIterator[bytes]


class Instance(Protocol):
    """One running copy of a container (a worker process, or a URL)."""

    @property
    def instance_id(self) -> str: ...

    @property
    def ready(self) -> bool:
        """True while the instance answers ``/ping`` and may take traffic."""
        ...

    @property
    def outstanding(self) -> int:
        """Calls in flight to this instance right now."""
        ...

    @property
    def base_url(self) -> str | None:
        """Where the container answers (``http://host:port``), while it runs; gateway replicas
        call it there directly."""
        ...

    async def invoke(self, request: ContainerRequest) -> ContainerResponse:
        """Call the container; raises ``ContainerTimeout`` or ``ContainerUnreachable``."""
        ...

    def invoke_stream(
        self, request: ContainerRequest
    ) -> AbstractAsyncContextManager[ContainerStream]:
        """Call the container and read its body as it arrives; ``request.timeout_s`` bounds
        the whole exchange. Leaving the context early closes the connection."""
        ...


class Fleet(Protocol):
    """The running instances of one ``FleetSpec``."""

    @property
    def instances(self) -> Sequence[Instance]: ...

    async def wait_ready(self) -> None:
        """Return once every instance answers ``/ping``; raise ``DeploymentFailed`` if one never will."""
        ...

    async def stop(self) -> None:
        """Stop every instance, letting in-flight calls finish within a bound."""
        ...

    async def scale(self, count: int) -> None:
        """Grow or shrink to ``count`` instances in place. Added instances start at once
        (``wait_ready`` says when they serve); removed ones leave ``instances`` first, so no
        new call reaches them, then finish their calls within the stop bound and stop. Returns
        once the removed instances have stopped; a stopped fleet ignores it."""
        ...


class WorkerPool(Protocol):
    async def launch(self, spec: FleetSpec) -> Fleet:
        """Start the fleet's instances and return at once; ``Fleet.wait_ready`` says when they serve."""
        ...

    async def shutdown(self) -> None:
        """Stop every fleet this pool launched. Leaves no process behind."""
        ...


class Catalog(Protocol):
    """Durable store of control-plane resources, keyed by account, kind and lower-cased name.

    Records are JSON-ready dicts; the services own their meaning.
    """

    def get(self, account: str, kind: str, name: str) -> dict[str, Any] | None: ...

    def put(self, account: str, kind: str, name: str, record: dict[str, Any]) -> None: ...

    def delete(self, account: str, kind: str, name: str) -> bool: ...

    def scan(self, account: str, kind: str) -> list[dict[str, Any]]: ...

    def all(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """Every (account, record) of a kind, across accounts: used on restart only."""
        ...


@dataclass(frozen=True)
class Account:
    account_id: str
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


class CredentialStore(Protocol):
    def lookup(self, access_key_id: str) -> Account | None: ...


# --- asynchronous inference -------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    content_type: str | None = None


class ObjectStore(Protocol):
    """Where async inputs are read and results written: ``s3://``, ``file://`` (and, for
    reading only, ``https://``) URLs. Implementations stream; nothing is held whole in memory."""

    async def stat(self, url: str) -> ObjectInfo:
        """Size and type of an object; raises ``DependencyFailed`` if it cannot be read."""
        ...

    def read(self, url: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The object's bytes, chunk by chunk."""
        ...

    async def write(
        self, url: str, data: AsyncIterator[bytes] | bytes, content_type: str | None
    ) -> None:
        """Create or replace the object; writing the same bytes twice leaves one identical object."""
        ...


class EndpointModels(Protocol):
    """How async jobs reach an endpoint's model: the same routing as real-time calls."""

    def capacity(self, account: str, endpoint_name: str) -> int:
        """How many instances of the endpoint are ready right now."""
        ...

    def call(
        self,
        account: str,
        endpoint_name: str,
        body: bytes | bytearray | AsyncIterable[bytes],
        headers: Sequence[tuple[str, str]],
        timeout_s: float,
        *,
        body_length: int | None = None,
    ) -> AbstractAsyncContextManager[ContainerStream]:
        """Call the model and read its answer as it arrives; raises ``ContainerTimeout``,
        ``ContainerUnreachable``, ``NoHealthyInstance`` or ``InvalidRequest`` (endpoint gone).
        ``body`` and ``body_length`` are as in ``ContainerRequest``."""
        ...


class Notifier(Protocol):
    """Publishes an async job's success or error message to a topic: an SNS topic ARN or,
    as a sagehost extension, an ``http(s)://`` webhook."""

    async def publish(self, topic: str, message: str) -> None:
        """Deliver ``message`` (a JSON document) or raise ``DependencyFailed``."""
        ...


# --- async job queue --------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One accepted ``InvokeEndpointAsync`` request and where it stands.

    ``job_id`` is ours: globally unique (a UUID hex the service generates) and the store's key.
    ``inference_id`` is the caller's InferenceId, which AWS lets repeat, so it is kept beside the
    key and looked up with ``JobStore.find``. Times are wall-clock epoch seconds from the
    service's ``Clock``. Only the ``JobStore`` changes ``status``, through
    ``core.job_states.advance``.
    """

    job_id: str
    account: str
    endpoint_name: str
    inference_id: str
    input_location: str
    output_location: str
    failure_location: str | None
    content_type: str | None
    accept: str | None
    custom_attributes: str | None
    invocation_timeout_s: float
    ttl_s: float
    enqueued_at: float
    status: JobStatus = JobStatus.QUEUED
    attempts: int = 0  # claims so far, the current one included
    lease_until: float | None = None  # set while Running
    started_at: float | None = None  # the latest claim
    finished_at: float | None = None
    failure_reason: str | None = None
    output_content_type: str | None = None


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_token: str | None  # pass back to ``JobStore.list`` for the next page; None at the end


class JobStore(Protocol):
    """Durable queue and record of async jobs. All status changes go through
    ``core.job_states.advance``, one transaction per change.

    ``attempt``, where accepted, fences a runner: it is the ``attempts`` of the Job it claimed,
    and a call whose attempt no longer matches raises ``LeaseLost`` and changes nothing.
    Unknown ids raise ``JobNotFound``; a status the event cannot leave raises
    ``IllegalJobTransition``.
    """

    async def enqueue(self, job: Job) -> None:
        """Record a new Queued job; returns only once it is durable. ``DuplicateJob`` if the id exists."""
        ...

    async def claim(
        self, account: str, endpoint_name: str, limit: int, lease_s: float, now: float
    ) -> list[Job]:
        """Atomically move up to ``limit`` of the endpoint's oldest unexpired Queued jobs to
        Running, leased until ``now + lease_s``, attempts + 1. No job goes to two claimers."""
        ...

    async def renew(self, job_id: str, lease_until: float, *, attempt: int | None = None) -> None:
        """Extend a Running job's lease."""
        ...

    async def complete(
        self,
        job_id: str,
        output_content_type: str | None,
        now: float,
        *,
        attempt: int | None = None,
    ) -> Job:
        """Running → Completed; returns the finished job."""
        ...

    async def fail(
        self, job_id: str, reason: str, now: float, *, attempt: int | None = None
    ) -> Job:
        """Running (or Queued) → Failed with ``reason``; returns the finished job."""
        ...

    async def requeue(self, job_id: str, now: float, *, attempt: int | None = None) -> Job:
        """The runner lost the job's worker: back to Queued, or Failed once the attempts are spent."""
        ...

    async def expire_queued(self, now: float, *, limit: int = 1000) -> list[Job]:
        """Fail every Queued job past its TTL; returns them so their failures can be written."""
        ...

    async def recover(self, now: float, *, startup: bool = False, limit: int = 1000) -> list[Job]:
        """Running jobs whose lease ran out go back to Queued, or to Failed once the attempts
        are spent; returns the changed jobs. Run on startup (and may run periodically)."""
        ...

    async def purge_finished(self, before: float, *, limit: int = 1000) -> int:
        """Forget at most ``limit`` Completed or Failed jobs that finished before ``before``;
        returns how many. Call again while the answer is ``limit``."""
        ...

    async def get(self, account: str, job_id: str) -> Job | None: ...

    async def find(self, account: str, endpoint_name: str, inference_id: str) -> list[Job]:
        """Jobs with this caller-chosen InferenceId, newest first (InferenceIds may repeat)."""
        ...

    async def backlog(self, account: str, endpoint_name: str) -> dict[JobStatus, int]:
        """How many of the endpoint's jobs are in each status; every status is present."""
        ...

    # Declared after every method annotated ``list[...]``: inside this class body the name
    # ``list`` means this method from here on.
    async def list(
        self,
        account: str,
        endpoint_name: str | None = None,
        status: JobStatus | None = None,
        limit: int = 100,
        next_token: str | None = None,
    ) -> JobPage:
        """The account's jobs, newest first, a page at a time."""
        ...

    async def close(self) -> None:
        """Finish the operations already submitted, then release the database."""
        ...
