"""The invocation service: route a call to a healthy instance and judge the container's answer."""

from __future__ import annotations

import asyncio
import random

from sagehost.core.endpoint_states import INVOCABLE
from sagehost.core.errors import (
    ContainerRefused,
    ContainerResponseTooLarge,
    ContainerTimeout,
    ContainerUnreachable,
    EndpointNotFound,
    InvalidRequest,
    ModelFailed,
    NoHealthyInstance,
    SagehostError,
)
from sagehost.core.invocation import Caller, InvokeInput, InvokeOutput
from sagehost.core.live import EndpointDirectory, LiveEndpoint, LiveVariant
from sagehost.core.ports import Clock, ContainerRequest, ContainerResponse, Instance
from sagehost.invoke.routing import choose_instance, choose_variant

# Platform headers forwarded to the container (§8.3); everything else the caller sent is dropped.
_FORWARD = (
    ("content_type", "Content-Type"),
    ("accept", "Accept"),
    ("custom_attributes", "X-Amzn-SageMaker-Custom-Attributes"),
    ("target_model", "X-Amzn-SageMaker-Target-Model"),
    ("session_id", "X-Amzn-SageMaker-Session-Id"),
    ("inference_id", "X-Amzn-SageMaker-Inference-Id"),
    ("enable_explanations", "X-Amzn-SageMaker-Enable-Explanations"),
)
MAX_ORIGINAL_MESSAGE = 2048


class Invoker:
    def __init__(
        self,
        directory: EndpointDirectory,
        clock: Clock,
        *,
        instance_wait_s: float = 10.0,
        max_response_bytes: int = 6 * 1024 * 1024,
        rng: random.Random | None = None,
    ) -> None:
        self._directory = directory
        self._clock = clock
        self._instance_wait_s = instance_wait_s
        self._max_response_bytes = max_response_bytes
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not secrets

    def resolve(self, caller: Caller, name: str, *, asynchronous: bool = False) -> LiveEndpoint:
        endpoint = self._directory.get(caller.account, name)
        if endpoint is None:
            raise EndpointNotFound(name, caller.account)
        if endpoint.status not in INVOCABLE:
            raise InvalidRequest(
                f"Endpoint {name} of account {caller.account} is not ready for invocations: "
                f"its status is {endpoint.status.value}."
            )
        if endpoint.async_inference != asynchronous:
            kind = "asynchronous" if endpoint.async_inference else "real-time"
            raise InvalidRequest(
                f"Endpoint {name} of account {caller.account} is an {kind} endpoint; "
                f"use {'InvokeEndpointAsync' if endpoint.async_inference else 'InvokeEndpoint'}."
            )
        return endpoint

    def admit(self, caller: Caller, request: InvokeInput) -> LiveEndpoint:
        """The endpoint a call goes to, once every routing header is known to apply to it."""
        endpoint = self.resolve(caller, request.endpoint_name)
        if request.target_model is not None:
            raise InvalidRequest(
                f"Endpoint {endpoint.name} of account {caller.account} is not a multi-model endpoint; "
                "remove TargetModel."
            )
        if request.target_container_hostname is not None:
            raise InvalidRequest(
                f"Endpoint {endpoint.name} of account {caller.account} is not a multi-container "
                "endpoint in Direct mode; remove TargetContainerHostname."
            )
        if request.inference_component is not None:
            raise InvalidRequest(
                f"Inference component {request.inference_component} was not found for endpoint "
                f"{endpoint.name} of account {caller.account}."
            )
        if request.session_id is not None and request.session_id != "NEW_SESSION":
            raise InvalidRequest(f"Session {request.session_id} is not an open session.")
        return endpoint

    async def pick(
        self, endpoint: LiveEndpoint, target: str | None
    ) -> tuple[LiveVariant, Instance]:
        """The variant (by weight or TargetVariant) and its least busy ready instance."""
        if endpoint.variants:
            variant = choose_variant(endpoint, target, self._rng)
            instance = choose_instance(variant.fleet.instances, self._rng)
            if instance is not None:
                return variant, instance
        return await self._wait_for_instance(endpoint, target)

    async def invoke(self, caller: Caller, request: InvokeInput) -> InvokeOutput:
        endpoint = self.admit(caller, request)
        variant, instance = await self.pick(endpoint, request.target_variant)
        headers = forwarded_headers(request)
        call = ContainerRequest(
            body=request.body,
            headers=headers,
            timeout_s=endpoint.invocation_timeout_s,
            max_response_bytes=self._max_response_bytes,
        )
        try:
            reply = await self._call(endpoint, variant, instance, call)
        except ContainerTimeout:
            raise timed_out(variant.container) from None
        except ContainerUnreachable as error:
            raise connection_failed(variant.container, endpoint.name, error) from None
        except ContainerResponseTooLarge:
            raise ModelFailed(
                f"Received a response from {variant.container} larger than the "
                f"{self._max_response_bytes} bytes allowed for real-time inference.",
                status=200,
                original_message="Response too large",
                container=variant.container,
            ) from None
        if not 200 <= reply.status < 300:
            raise container_error(variant.container, endpoint.name, reply.status, reply.body)
        headers_in = reply.headers
        return InvokeOutput(
            body=reply.body,
            invoked_variant=variant.name,
            content_type=headers_in.get("content-type"),
            custom_attributes=headers_in.get("x-amzn-sagemaker-custom-attributes"),
            new_session_id=headers_in.get("x-amzn-sagemaker-new-session-id"),
            closed_session_id=headers_in.get("x-amzn-sagemaker-closed-session-id"),
        )

    async def _call(
        self,
        endpoint: LiveEndpoint,
        variant: LiveVariant,
        instance: Instance,
        call: ContainerRequest,
    ) -> ContainerResponse:
        """Call an instance; one that refuses the connection (it just died) never saw the call,
        so the call goes to the next healthy instance of the variant, within the wait bound."""
        deadline = self._clock.monotonic() + self._instance_wait_s
        delay = 0.005
        while True:
            try:
                return await instance.invoke(call)
            except ContainerRefused:
                if self._clock.monotonic() >= deadline:
                    raise
            await asyncio.sleep(delay)  # give the supervisor a moment to mark it down
            delay = min(delay * 2, 0.1)
            chosen = choose_instance(variant.fleet.instances, self._rng)
            if chosen is not None:
                instance = chosen

    async def _wait_for_instance(
        self, endpoint: LiveEndpoint, target: str | None
    ) -> tuple[LiveVariant, Instance]:
        """No instance is ready (a restart, a crash): wait briefly rather than fail at once."""
        deadline = self._clock.monotonic() + self._instance_wait_s
        delay = 0.01
        while self._clock.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
            if not endpoint.variants:
                continue  # the fleet is still being brought back after a restart
            variant = choose_variant(endpoint, target, self._rng)
            instance = choose_instance(variant.fleet.instances, self._rng)
            if instance is not None:
                return variant, instance
        raise NoHealthyInstance(
            f"Endpoint {endpoint.name} has no healthy instance to serve the request. Try again later."
        )


def forwarded_headers(request: InvokeInput) -> list[tuple[str, str]]:
    return [
        (wire, value) for attr, wire in _FORWARD if (value := getattr(request, attr)) is not None
    ]


def connection_failed(container: str, endpoint: str, error: SagehostError) -> ModelFailed:
    return ModelFailed(
        f'Received server error (0) from {container} with message "{error.message}". '
        f"See the sagehost log of endpoint {endpoint} for more information.",
        status=0,
        original_message=error.message,
        container=container,
    )


def container_error(container: str, endpoint: str, status: int, body: bytes) -> ModelFailed:
    text = body[:MAX_ORIGINAL_MESSAGE].decode("utf-8", "replace")
    kind = "client" if status < 500 else "server"
    return ModelFailed(
        f'Received {kind} error ({status}) from {container} with message "{text}". '
        f"See the sagehost log of endpoint {endpoint} for more information.",
        status=status,
        original_message=text,
        container=container,
    )


def timed_out(container: str) -> ModelFailed:
    return ModelFailed(
        f"Received server error (0) from {container} with message "
        f'"Your invocation timed out while waiting for a response from container {container}. '
        'Review the latency metrics for each container, resolve the issue, and try again."',
        status=0,
        original_message=(
            f"Your invocation timed out while waiting for a response from container {container}."
        ),
        container=container,
    )
