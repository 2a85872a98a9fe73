"""Shadow variants: a ``CallObserver`` that copies a sampled share of an endpoint's calls to
its shadow variants, discards their answers and records how they went.

A copy is sent from a background task after the caller's answer is ready, so the shadow can
neither delay nor fail the call. Copies in flight are bounded per shadow variant: past
``max_in_flight`` a copy is dropped and counted, never queued. Each shadow variant keeps a
bounded summary (counts, status codes, bytes, latency percentiles over the last
``latency_window`` copies, the last ``recent`` outcomes), which sagehost's own operation
``SageHost.DescribeShadowTraffic`` returns.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sagehost.core.errors import (
    ContainerResponseTooLarge,
    ContainerTimeout,
    ContainerUnreachable,
    InvalidRequest,
)
from sagehost.core.invocation import Caller, InvokeInput, InvokeOutput
from sagehost.core.live import LiveEndpoint, LiveVariant
from sagehost.core.ports import Clock, ContainerRequest
from sagehost.invoke.routing import choose_instance

log = logging.getLogger("sagehost.shadow")

# Platform headers copied to the shadow (§8.3); a session id names an instance of the
# production variant and means nothing to the shadow, so it is left out.
_COPIED = (
    ("content_type", "Content-Type"),
    ("accept", "Accept"),
    ("custom_attributes", "X-Amzn-SageMaker-Custom-Attributes"),
    ("inference_id", "X-Amzn-SageMaker-Inference-Id"),
    ("enable_explanations", "X-Amzn-SageMaker-Enable-Explanations"),
)
ERROR = "Error"  # the outcome of a copy the shadow never answered (timeout, connection)


@dataclass
class ShadowStats:
    """What happened to the copies sent to one shadow variant."""

    variant: str
    sampling_percentage: float
    latency_window: int = 1000
    recent_size: int = 20
    sent: int = 0
    succeeded: int = 0  # 2xx
    failed: int = 0  # answered, not 2xx
    errors: int = 0  # no answer: timeout, connection failure, answer too large
    dropped: int = 0  # not sent: too many copies in flight
    unavailable: int = 0  # not sent: no ready instance
    in_flight: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: deque[float] = field(init=False)
    recent: deque[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.latencies_ms = deque(maxlen=self.latency_window)
        self.recent = deque(maxlen=self.recent_size)

    def record(
        self,
        *,
        status: int | None,
        latency_s: float,
        request_bytes: int,
        response_bytes: int,
        at: float,
        error: str | None = None,
    ) -> None:
        latency_ms = round(latency_s * 1000, 3)
        self.request_bytes += request_bytes
        self.response_bytes += response_bytes
        self.latencies_ms.append(latency_ms)
        if status is None:
            self.errors += 1
            self.statuses[ERROR] += 1
        elif 200 <= status < 300:
            self.succeeded += 1
            self.statuses[str(status)] += 1
        else:
            self.failed += 1
            self.statuses[str(status)] += 1
        outcome: dict[str, Any] = {
            "Time": round(at, 3),
            "Status": status if status is not None else ERROR,
            "LatencyMs": latency_ms,
            "RequestBytes": request_bytes,
            "ResponseBytes": response_bytes,
        }
        if error is not None:
            outcome["Error"] = error
        self.recent.append(outcome)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        latency: dict[str, float] = {}
        if ordered:
            latency = {
                "Min": ordered[0],
                "P50": _percentile(ordered, 50),
                "P90": _percentile(ordered, 90),
                "P99": _percentile(ordered, 99),
                "Max": ordered[-1],
                "Samples": len(ordered),
            }
        return {
            "VariantName": self.variant,
            "SamplingPercentage": self.sampling_percentage,
            "Sent": self.sent,
            "Succeeded": self.succeeded,
            "Failed": self.failed,
            "Errors": self.errors,
            "Dropped": self.dropped,
            "Unavailable": self.unavailable,
            "InFlight": self.in_flight,
            "RequestBytes": self.request_bytes,
            "ResponseBytes": self.response_bytes,
            "StatusCounts": dict(self.statuses),
            "LatencyMs": latency,
            "Recent": list(self.recent),
        }


class ShadowMirror:
    """Implements ``core.live.CallObserver`` for an endpoint's shadow variants."""

    def __init__(
        self,
        endpoint_name: str,
        shadows: tuple[LiveVariant, ...],
        clock: Clock,
        *,
        timeout_s: float = 60.0,
        max_in_flight: int = 32,
        max_response_bytes: int = 6 * 1024 * 1024,
        rng: random.Random | None = None,
    ) -> None:
        self._endpoint = endpoint_name
        self._clock = clock
        self._timeout_s = timeout_s
        self._max_in_flight = max_in_flight
        self._max_response_bytes = max_response_bytes
        self._rng = rng or random.Random()  # noqa: S311 - sampling, not secrets
        self._targets = tuple((s, ShadowStats(s.name, s.sampling)) for s in shadows)
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def stats(self) -> tuple[ShadowStats, ...]:
        return tuple(stats for _, stats in self._targets)

    def observe(self, request: InvokeInput, response: InvokeOutput) -> None:
        if self._closed:
            return
        for shadow, stats in self._targets:
            if shadow.sampling < 100 and self._rng.random() * 100 >= shadow.sampling:
                continue
            if stats.in_flight >= self._max_in_flight:
                stats.dropped += 1
                continue
            stats.in_flight += 1
            task = asyncio.get_running_loop().create_task(self._copy(shadow, stats, request))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Stop copying and cancel the copies in flight: their answers would be discarded
        anyway, and a copy still running would hold up the shadow fleet's stop."""
        self._closed = True
        pending = list(self._tasks)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _copy(self, shadow: LiveVariant, stats: ShadowStats, request: InvokeInput) -> None:
        try:
            instance = choose_instance(shadow.fleet.instances, self._rng, shadow.routing)
            if instance is None:
                stats.unavailable += 1
                return
            stats.sent += 1
            call = ContainerRequest(
                body=request.body,
                headers=[(wire, v) for attr, wire in _COPIED if (v := getattr(request, attr))],
                timeout_s=self._timeout_s,
                max_response_bytes=self._max_response_bytes,
            )
            started = self._clock.monotonic()
            try:
                reply = await instance.invoke(call)
            except (ContainerTimeout, ContainerUnreachable, ContainerResponseTooLarge) as error:
                latency = self._clock.monotonic() - started
                stats.record(
                    status=None,
                    latency_s=latency,
                    request_bytes=len(request.body),
                    response_bytes=0,
                    at=self._clock.time(),
                    error=type(error).__name__,
                )
                log.info(
                    "endpoint %s: shadow %s got no answer: %s",
                    self._endpoint,
                    shadow.name,
                    error.message,
                )
                return
            latency = self._clock.monotonic() - started
            stats.record(
                status=reply.status,
                latency_s=latency,
                request_bytes=len(request.body),
                response_bytes=len(reply.body),
                at=self._clock.time(),
            )
            log.debug(
                "endpoint %s: shadow %s answered %d in %.1f ms",
                self._endpoint,
                shadow.name,
                reply.status,
                latency * 1000,
            )
        finally:
            stats.in_flight -= 1


def shadow_report(
    resolve: Callable[[Caller, str], LiveEndpoint],
) -> Callable[[Caller, dict[str, Any]], Awaitable[dict[str, Any]]]:
    """The handler of ``SageHost.DescribeShadowTraffic`` {EndpointName}: each shadow variant's
    summary. ``resolve`` finds the caller's endpoint whatever its status or kind
    (``Invoker.find``): the report is about the endpoint, not a call to it."""

    async def describe(caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("EndpointName")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("EndpointName is required.")
        endpoint = resolve(caller, name)
        variants = [
            stats.summary()
            for observer in endpoint.observers
            if isinstance(observer, ShadowMirror)
            for stats in observer.stats
        ]
        return {"EndpointName": endpoint.name, "ShadowVariants": variants}

    return describe


def _percentile(ordered: list[float], percent: int) -> float:
    """Nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, -(-percent * len(ordered) // 100))
    return ordered[rank - 1]
