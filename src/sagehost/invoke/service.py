"""The invocation service: route a call to a healthy instance and judge the container's answer."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable

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
from sagehost.core.live import EndpointDirectory, LiveEndpoint
from sagehost.core.ports import Clock, ContainerRequest, ContainerResponse, Instance
from sagehost.invoke.components import select_component
from sagehost.invoke.pipelines import call_containers
from sagehost.invoke.routing import Route, check_targets, choose_instance, choose_variant
from sagehost.invoke.sessions import SessionTable, new_session_header

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
        self.sessions = SessionTable(clock)

    @property
    def rng(self) -> random.Random:
        """The one random source of routing, shared with the pipeline helpers."""
        return self._rng

    @property
    def instance_wait_s(self) -> float:
        """How long a call waits for a ready instance before ServiceUnavailable."""
        return self._instance_wait_s

    def find(self, caller: Caller, name: str) -> LiveEndpoint:
        """The caller's endpoint ``name`` whatever its status or kind, for reports about it;
        invocations go through ``resolve``."""
        endpoint = self._directory.get(caller.account, name)
        if endpoint is None:
            raise EndpointNotFound(name, caller.account)
        return endpoint

    def resolve(self, caller: Caller, name: str, *, asynchronous: bool = False) -> LiveEndpoint:
        """The caller's endpoint ``name``, if it takes calls of this kind now."""
        endpoint = self.find(caller, name)
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

    async def route(
        self, caller: Caller, request: InvokeInput, *, asynchronous: bool = False
    ) -> Route:
        """Where a call goes, in the order of §7.2: the endpoint, the inference component or
        the variant, the session's instance, then the container and model headers."""
        endpoint = self.resolve(caller, request.endpoint_name, asynchronous=asynchronous)
        return await self.route_to(endpoint, request)

    async def route_to(self, endpoint: LiveEndpoint, request: InvokeInput) -> Route:
        component = select_component(endpoint, request)
        if component is not None:
            route = Route(endpoint, component.serving, component.variant_name, component=component)
        else:
            if not endpoint.variants:
                await self._wait_for_variants(endpoint)
            variant = choose_variant(endpoint, request.target_variant, self._rng)
            route = Route(endpoint, variant, variant.name, target_variant=request.target_variant)
        self.sessions.pin(route, request)
        check_targets(route, request)
        return route

    async def pick(self, route: Route) -> Instance:
        """The instance a single-container call goes to: the session's, or the least busy
        (or a random) ready one, waiting briefly while none is ready."""
        if route.instance is not None:
            return route.instance
        instance = choose_instance(route.variant.fleet.instances, self._rng, route.variant.routing)
        if instance is not None:
            return instance
        return await self._wait_for_instance(route)

    async def invoke(self, caller: Caller, request: InvokeInput) -> InvokeOutput:
        route = await self.route(caller, request)
        call = ContainerRequest(
            body=request.body,
            headers=forwarded_headers(request),
            timeout_s=route.endpoint.invocation_timeout_s,
            max_response_bytes=self._max_response_bytes,
        )
        variant = route.variant
        if variant.models is not None:
            assert request.target_model is not None  # check_targets made sure
            reply = await self.guard(
                route, variant.container, variant.models.invoke(request.target_model, call)
            )
        elif variant.containers:
            reply = await call_containers(self, route, request, call)
        else:
            instance = await self.pick(route)
            reply = await self.guard(route, variant.container, self._call(route, instance, call))
            self.sessions.observe(route, request, instance, reply.headers)
        headers_in = reply.headers
        output = InvokeOutput(
            body=reply.body,
            invoked_variant=route.variant_name,
            content_type=headers_in.get("content-type"),
            custom_attributes=headers_in.get("x-amzn-sagemaker-custom-attributes"),
            new_session_id=new_session_header(request, headers_in),
            closed_session_id=headers_in.get("x-amzn-sagemaker-closed-session-id"),
        )
        for observer in route.endpoint.observers:
            observer.observe(request, output)
        return output

    async def guard(
        self, route: Route, container: str, pending: Awaitable[ContainerResponse]
    ) -> ContainerResponse:
        """Await a container call and judge it: anything but a 2xx answer is a ModelFailed
        naming ``container``."""
        try:
            reply = await pending
        except ContainerTimeout:
            raise timed_out(container) from None
        except ContainerUnreachable as error:
            raise connection_failed(container, route.endpoint.name, error) from None
        except ContainerResponseTooLarge:
            raise ModelFailed(
                f"Received a response from {container} larger than the "
                f"{self._max_response_bytes} bytes allowed for real-time inference.",
                status=200,
                original_message="Response too large",
                container=container,
            ) from None
        if not 200 <= reply.status < 300:
            raise container_error(container, route.endpoint.name, reply.status, reply.body)
        return reply

    async def _call(
        self, route: Route, instance: Instance, call: ContainerRequest
    ) -> ContainerResponse:
        """Call an instance; one that refuses the connection (it just died) never saw the call,
        so the call goes to the next healthy instance of the variant, within the wait bound.
        A session's instance is never swapped."""
        deadline = self._clock.monotonic() + self._instance_wait_s
        delay = 0.005
        while True:
            try:
                return await instance.invoke(call)
            except ContainerRefused:
                if route.instance is not None or self._clock.monotonic() >= deadline:
                    raise
            await asyncio.sleep(delay)  # give the supervisor a moment to mark it down
            delay = min(delay * 2, 0.1)
            variant = route.variant
            chosen = choose_instance(variant.fleet.instances, self._rng, variant.routing)
            if chosen is not None:
                instance = chosen

    async def _wait_for_instance(self, route: Route) -> Instance:
        """No instance is ready (a restart, a crash): wait briefly rather than fail at once.
        The variant is chosen again each time, as a restart rebuilds the endpoint's table."""
        endpoint = route.endpoint
        deadline = self._clock.monotonic() + self._instance_wait_s
        delay = 0.01
        while self._clock.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
            variant = route.variant
            if route.component is None and variant not in endpoint.variants:
                # An update swapped the fleets while this call waited.
                variant = choose_variant(endpoint, route.target_variant, self._rng)
            instance = choose_instance(variant.fleet.instances, self._rng, variant.routing)
            if instance is not None:
                route.variant = variant
                route.variant_name = variant.name
                return instance
        raise NoHealthyInstance(
            f"Endpoint {endpoint.name} has no healthy instance to serve the request. Try again later."
        )

    async def _wait_for_variants(self, endpoint: LiveEndpoint) -> None:
        """After a restart an InService endpoint's fleets are still being brought back."""
        deadline = self._clock.monotonic() + self._instance_wait_s
        delay = 0.01
        while not endpoint.variants:
            if self._clock.monotonic() >= deadline:
                raise NoHealthyInstance(
                    f"Endpoint {endpoint.name} has no healthy instance to serve the request. "
                    "Try again later."
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)


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
