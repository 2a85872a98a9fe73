"""A fleet: the instances of one ``FleetSpec``, sharing one model directory.

Files live under the pool's data dir::

    artifacts/<digest>/            extracted model data, shared by fleets (storage.artifacts)
    fleets/<fleet key>/model       SAGEMAKER_BASE_DIR of the fleet; ``model`` links to the model dir
    logs/<fleet key>/<instance id>.log
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from sagehost.core.errors import DeploymentFailed
from sagehost.core.ports import Clock, FleetSpec
from sagehost.protocol import container as contract
from sagehost.storage.artifacts import fetch_model_data
from sagehost.workers.client import ContainerClient
from sagehost.workers.images import (
    DockerImage,
    Launch,
    RemoteUrl,
    build_launch,
    docker_problem,
    resolve_image,
)
from sagehost.workers.instance import Target, WorkerInstance
from sagehost.workers.settings import WorkerSettings


class WorkerFleet:
    """Implements ``core.ports.Fleet``. Created by ``ProcessWorkerPool.launch``."""

    def __init__(
        self,
        spec: FleetSpec,
        *,
        settings: WorkerSettings,
        client: ContainerClient,
        clock: Clock,
        on_stopped: Callable[[WorkerFleet], None],
        retire: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.spec = spec
        self._retire = retire
        self._settings = settings
        self._on_stopped = on_stopped
        self._stop_task: asyncio.Task[None] | None = None
        # Resolving the image and fetching the model happen once, in the background, so that
        # launch() returns at once; every instance waits for the outcome.
        self._prepared = asyncio.create_task(self._prepare(), name=f"prepare {spec.key}")
        self._prepared.add_done_callback(_retrieve)
        self._client = client
        self._clock = clock
        self._next_index = 0
        self._scaling = asyncio.Lock()
        # Instances that scale() took out of routing and is still stopping.
        self._leaving: set[WorkerInstance] = set()
        self._instances = [self._new_instance() for _ in range(spec.instance_count)]
        for instance in self._instances:
            instance.start()

    def _new_instance(self) -> WorkerInstance:
        spec = self.spec
        name = f"{spec.key}-{self._next_index}"
        self._next_index += 1
        return WorkerInstance(
            instance_id=name,
            hostname=spec.container.hostname,
            log_path=self._settings.data_dir / "logs" / spec.key / f"{name}.log",
            target=self._prepared,
            client=self._client,
            settings=self._settings,
            clock=self._clock,
            startup_timeout_s=spec.startup_timeout_s,
            retire=self._retire,
        )

    @property
    def instances(self) -> Sequence[WorkerInstance]:
        return self._instances

    async def wait_ready(self) -> None:
        """Return once every instance has passed ``/ping``; raise at the first that cannot.

        Instances that crash later are restarted by their supervisor and never fail this.
        """
        pending: set[asyncio.Future[str | None]] = {i.settled for i in self._instances}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for settled in done:
                failure = settled.result()
                if failure is not None:
                    raise DeploymentFailed(failure)

    async def stop(self) -> None:
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stop_task)

    async def scale(self, count: int) -> None:
        """Grow or shrink to ``count`` instances (``core.ports.Fleet.scale``).

        Shrinking removes instances that are not ready first, then the least busy, newest
        first. They leave ``instances`` in the same step, so the routing, which picks an
        instance and counts its call without yielding, never sends them another call; their
        calls in flight finish (within the stop grace) before they stop.
        """
        if count < 0:
            raise ValueError(f"A fleet cannot have {count} instances.")
        async with self._scaling:
            if self._stop_task is not None:
                return
            current = self._instances
            if count >= len(current):
                added = [self._new_instance() for _ in range(count - len(current))]
                self._instances = [*current, *added]
                for instance in added:
                    instance.start()
                return
            order = sorted(reversed(current), key=lambda i: (i.ready, i.outstanding))
            leaving = order[: len(current) - count]
            self._instances = [i for i in current if i not in leaving]
            self._leaving.update(leaving)
            # Cancelled here, they go on stopping (Instance.stop is shielded) and stop() waits.
            await asyncio.gather(*(instance.stop() for instance in leaving))
            self._leaving.difference_update(leaving)

    async def _stop(self) -> None:
        everyone = [*self._instances, *self._leaving]
        await asyncio.gather(*(instance.stop() for instance in everyone))
        self._prepared.cancel()
        await asyncio.wait({self._prepared})
        self._on_stopped(self)

    async def _prepare(self) -> Target:
        spec, settings = self.spec, self._settings
        image = resolve_image(spec.container.image)
        if isinstance(image, RemoteUrl):
            return Target(url=image.url)
        if isinstance(image, DockerImage):
            problem = await docker_problem(
                image.image, settings.docker_host, settings.docker_socket
            )
            if problem is not None:
                raise DeploymentFailed(problem)
            if shutil.which("docker") is None:
                raise DeploymentFailed(
                    f'Image "{image.image}" needs the docker command and it is not on PATH.'
                )
        model_dir = await fetch_model_data(
            spec.container.model_data_url, settings.data_dir / "artifacts", spec.download_timeout_s
        )
        base_dir = _base_dir(settings.data_dir / "fleets" / spec.key, model_dir)
        base_env = dict(os.environ if settings.base_env is None else settings.base_env)

        multi_model = contract.is_truthy(spec.container.environment.get(contract.ENV_MULTI_MODEL))
        shared = settings.multi_model_dirs if multi_model else ()

        def launch(port: int, name: str) -> Launch:
            return build_launch(
                image,
                python=settings.python,
                base_env=base_env,
                environment=spec.container.environment,
                port=port,
                bind_host=settings.bind_host,
                model_dir=model_dir,
                base_dir=base_dir,
                hostname=spec.container.hostname,
                name=name,
                shared_dirs=shared,
            )

        return Target(launch=launch)


def _base_dir(base: Path, model_dir: Path) -> Path:
    """A SAGEMAKER_BASE_DIR whose ``model`` is the model dir, for toolkits that read it."""
    base.mkdir(parents=True, exist_ok=True)
    link = base / contract.MODEL_SUBDIR
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(model_dir, target_is_directory=True)
    return base


def _retrieve(task: asyncio.Task[Target]) -> None:
    # Instances read the outcome; this keeps a fleet of none from logging "never retrieved".
    if not task.cancelled():
        task.exception()
