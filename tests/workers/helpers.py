"""Shared pieces of the worker tests: the test container's images, a pool, bounded polling."""

from __future__ import annotations

import asyncio
import shlex
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from sagehost.core.ports import ContainerRequest, ContainerSpec, FleetSpec
from sagehost.workers import ProcessWorkerPool, RestartPolicy, WorkerSettings

APP = Path(__file__).with_name("container_app.py")


def app_image(mode: str) -> str:
    return f"process:{shlex.quote(sys.executable)} {shlex.quote(str(APP))} {mode}"


def fleet(
    mode: str,
    *,
    key: str = "fleet",
    count: int = 1,
    env: Mapping[str, str] | None = None,
    startup_timeout_s: float = 20.0,
    model_data_url: str | None = None,
    image: str | None = None,
) -> FleetSpec:
    container = ContainerSpec(
        image=image or app_image(mode), model_data_url=model_data_url, environment=dict(env or {})
    )
    return FleetSpec(
        key=key, container=container, instance_count=count, startup_timeout_s=startup_timeout_s
    )


def settings(data_dir: Path, **overrides: Any) -> WorkerSettings:
    base = WorkerSettings(
        data_dir=data_dir, stop_grace_s=2.0, restart=RestartPolicy(initial_s=0.05, max_s=1.0)
    )
    return replace(base, **overrides)


@asynccontextmanager
async def running_pool(data_dir: Path, **overrides: Any) -> AsyncIterator[ProcessWorkerPool]:
    pool = ProcessWorkerPool(settings(data_dir, **overrides))
    try:
        yield pool
    finally:
        await pool.shutdown()


def request(
    body: bytes = b"", headers: list[tuple[str, str]] | None = None, **kwargs: Any
) -> ContainerRequest:
    return ContainerRequest(
        body=body, headers=headers or [], timeout_s=kwargs.pop("timeout_s", 10.0), **kwargs
    )


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie: a zombie holds no port and no memory."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def eventually(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``predicate`` every 20 ms; fail the test if it is not true within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)
