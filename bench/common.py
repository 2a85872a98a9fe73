"""Pieces the benchmark scripts share."""

from __future__ import annotations

import time
import urllib.request


def wait_ping(url: str, timeout: float = 30) -> None:
    """Wait until ``url``/ping answers 200 (a readiness probe, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(url)
