"""What a runtime invocation asks for and what it answers, free of any wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class InvokeInput:
    endpoint_name: str
    body: bytes
    content_type: str | None = None
    accept: str | None = None
    custom_attributes: str | None = None
    target_model: str | None = None
    target_variant: str | None = None
    target_container_hostname: str | None = None
    inference_id: str | None = None
    enable_explanations: str | None = None
    inference_component: str | None = None
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class InvokeOutput:
    body: bytes
    invoked_variant: str
    content_type: str | None = None
    custom_attributes: str | None = None
    new_session_id: str | None = None
    closed_session_id: str | None = None


@dataclass(frozen=True, slots=True)
class StreamOutput:
    """An open response stream. ``first`` is the container's first chunk (``None`` when the
    stream was empty); ``rest`` yields the others as they arrive and raises
    ``ModelStreamFailed`` if the stream breaks."""

    invoked_variant: str
    first: bytes | None
    rest: AsyncIterator[bytes]
    content_type: str | None = None
    custom_attributes: str | None = None


@dataclass(frozen=True, slots=True)
class AsyncInput:
    """An InvokeEndpointAsync request, validated against the service model."""

    endpoint_name: str
    input_location: str
    content_type: str | None = None
    accept: str | None = None
    custom_attributes: str | None = None
    inference_id: str | None = None
    output_path_extension: str | None = None
    filename: str | None = None
    ttl_s: int = 21600
    invocation_timeout_s: int = 900


@dataclass(frozen=True, slots=True)
class AsyncAccepted:
    inference_id: str
    output_location: str
    failure_location: str | None


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated account and the region it signed for."""

    account: str
    region: str
