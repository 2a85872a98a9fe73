"""Settings of the process worker pool, built by the caller: nothing here reads the environment."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class RestartPolicy:
    """Delay before restarting a crashed instance: doubling from ``initial_s`` up to ``max_s``.

    The delay starts over once an instance has stayed healthy for ``reset_after_s``, so a crash
    loop slows down while a rare crash is restarted at once.
    """

    initial_s: float = 0.1
    factor: float = 2.0
    max_s: float = 10.0
    reset_after_s: float = 30.0


class Backoff:
    """The running state of a ``RestartPolicy`` for one instance."""

    def __init__(self, policy: RestartPolicy) -> None:
        self._policy = policy
        self._next = policy.initial_s

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(delay * self._policy.factor, self._policy.max_s)
        return delay

    def reset(self) -> None:
        self._next = self._policy.initial_s


@dataclass(frozen=True)
class WorkerSettings:
    """Everything ``ProcessWorkerPool`` needs, passed in explicitly.

    ``base_env`` is the environment workers inherit (before AWS credentials and ``SAGEHOST_*``
    variables are removed); ``None`` means this process's environment at spawn time.
    ``docker_host`` is the caller's ``DOCKER_HOST``: when set, a Docker engine is assumed.
    """

    data_dir: Path
    python: str = field(default_factory=lambda: sys.executable)
    bind_host: str = "127.0.0.1"
    ping_timeout_s: float = 2.0
    startup_poll_initial_s: float = 0.05
    startup_poll_max_s: float = 0.25
    health_interval_s: float = 5.0
    unhealthy_after_failures: int = 3
    unhealthy_restart_s: float = 60.0
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    stop_grace_s: float = 10.0
    docker_host: str | None = None
    docker_socket: Path = Path("/var/run/docker.sock")
    base_env: Mapping[str, str] | None = None
    # Where multi-model containers find the models they are asked to load: a Docker container
    # sees these directories at the same paths, read-only.
    multi_model_dirs: tuple[Path, ...] = ()


class SystemClock:
    """The real clock; tests may pass any ``core.ports.Clock`` instead."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()
