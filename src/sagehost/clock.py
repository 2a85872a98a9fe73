"""The real clock. Services take a :class:`~sagehost.core.ports.Clock`; tests pass a fake."""

from __future__ import annotations

import time


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()
