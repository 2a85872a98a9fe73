"""Builds an endpoint's call observers from its config: data capture and shadow traffic.

Implements ``core.live.ObserverFactory``; ``server.py`` hands one to the control plane, which
calls it whenever it deploys a config. It also remembers every observer it built and still
open, so that shutdown writes out the data captured so far.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from sagehost.core.live import CallObserver, LiveEndpoint, LiveVariant
from sagehost.core.ports import Clock, ObjectStore
from sagehost.invoke.capture import CaptureWriter
from sagehost.invoke.capture_format import CaptureSettings
from sagehost.invoke.shadow import ShadowMirror


class CallObservers:
    def __init__(
        self,
        objects: ObjectStore,
        clock: Clock,
        *,
        capture_flush_s: float = 2.0,
        shadow_in_flight: int = 32,
        max_response_bytes: int = 6 * 1024 * 1024,
    ) -> None:
        self._objects = objects
        self._clock = clock
        self._capture_flush_s = capture_flush_s
        self._shadow_in_flight = shadow_in_flight
        self._max_response_bytes = max_response_bytes
        # Weak: an observer the control plane has dropped (and closed) needs no closing here.
        self._built: weakref.WeakSet[CaptureWriter | ShadowMirror] = weakref.WeakSet()

    def build(
        self, endpoint: LiveEndpoint, config: dict[str, Any], shadows: tuple[LiveVariant, ...]
    ) -> tuple[CallObserver, ...]:
        observers: list[CaptureWriter | ShadowMirror] = []
        capture = config.get("DataCaptureConfig")
        settings = CaptureSettings.from_config(capture) if capture else None
        if settings is not None:
            observers.append(
                CaptureWriter(
                    endpoint.name,
                    settings,
                    self._objects,
                    self._clock,
                    flush_interval_s=self._capture_flush_s,
                )
            )
        if shadows:
            observers.append(
                ShadowMirror(
                    endpoint.name,
                    shadows,
                    self._clock,
                    timeout_s=endpoint.invocation_timeout_s,
                    max_in_flight=self._shadow_in_flight,
                    max_response_bytes=self._max_response_bytes,
                )
            )
        self._built.update(observers)
        return tuple(observers)

    async def close(self) -> None:
        """Close every observer still alive (server shutdown), so captures are written out.
        Closing is idempotent, so observers the control plane already closed cost nothing."""
        observers = list(self._built)
        await asyncio.gather(*(o.close() for o in observers), return_exceptions=True)
