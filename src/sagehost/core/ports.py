"""Interfaces the services depend on. Adapters implement them; ``server.py`` wires them.

Everything here is a ``typing.Protocol`` or a plain frozen dataclass, so services can be
tested against fakes in ``sagehost.testing`` and adapters can be swapped without touching them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol


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
    """A call to a container's ``POST /invocations``; headers are already filtered."""

    body: bytes
    headers: Sequence[tuple[str, str]]
    timeout_s: float
    path: str = "/invocations"
    max_response_bytes: int = 6 * 1024 * 1024  # larger answers raise ContainerResponseTooLarge


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

    async def write(self, url: str, data: AsyncIterator[bytes] | bytes, content_type: str | None) -> None:
        """Create or replace the object; writing the same bytes twice leaves one identical object."""
        ...


class Notifier(Protocol):
    """Publishes an async job's success or error message to a topic: an SNS topic ARN or,
    as a sagehost extension, an ``http(s)://`` webhook."""

    async def publish(self, topic: str, message: str) -> None:
        """Deliver ``message`` (a JSON document) or raise ``DependencyFailed``."""
        ...
