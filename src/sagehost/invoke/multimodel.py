"""The ``core.live.ModelHost`` of a multi-model variant (§7.3): loads each ``TargetModel`` into
an instance of the fleet on first use and routes calls to an instance that holds it.

A call for a model that no instance holds starts (or joins) that model's one load task: fetch
the files (``ModelFiles``), choose an instance and the least recently used idle models to
unload there (``ModelCache``), ``DELETE`` them, then ``POST /models`` (§8.4). A ``507`` answer
unloads one more model and tries again. The task runs up to ``spec.load_timeout_s`` (360 s)
whatever happens to the calls waiting on it: a call whose own deadline passes first answers
``ModelNotReady`` (429) and the load goes on. A loaded model is called at
``POST /models/<name>/invoke`` on the least busy instance holding it; a ``404`` there from a
container that no longer lists the model (it restarted) reloads the model once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sagehost.core.errors import (
    ContainerRefused,
    ContainerTimeout,
    ContainerUnreachable,
    DeploymentFailed,
    NoHealthyInstance,
    SagehostError,
)
from sagehost.core.multimodel import (
    LocalModel,
    ModelFiles,
    ModelHostFactory,
    MultiModelSpec,
    check_target_model,
    model_name,
)
from sagehost.core.ports import Clock, ContainerRequest, ContainerResponse, Fleet, Instance
from sagehost.invoke import model_api as api
from sagehost.invoke.model_cache import Candidate, Copy, CopyState, ModelCache

log = logging.getLogger("sagehost.invoke")

# Calls in flight on every instance holding a model before it is loaded on one more instance.
HOT_OUTSTANDING = 4
MAX_REMEMBERED_PATHS = 4096
# A load's POST gives up this long before the whole load's budget ends, so that a slow load
# normally ends as the container's timeout (its copy forgotten at once) rather than as a
# cancellation of the whole load task.
LOAD_MARGIN_S = 1.0


class MultiModelHost:
    def __init__(
        self,
        spec: MultiModelSpec,
        fleet: Fleet,
        files: ModelFiles,
        clock: Clock,
        *,
        instance_wait_s: float = 10.0,
    ) -> None:
        self.spec = spec
        self._fleet = fleet
        self._files = files
        self._clock = clock
        self._instance_wait_s = instance_wait_s
        self._cache = ModelCache(spec.memory_budget)
        self._loads: dict[str, asyncio.Task[str]] = {}
        self._spreading: dict[str, asyncio.Task[None]] = {}
        self._unloads: dict[tuple[str, str], asyncio.Task[None]] = {}
        # TargetModel -> its checked invoke path, so a warm call neither checks nor hashes.
        self._invoke_paths: dict[str, str] = {}
        self._closed = False

    # -- core.live.ModelHost ------------------------------------------------------------------

    async def invoke(self, target_model: str, request: ContainerRequest) -> ContainerResponse:
        deadline = self._clock.monotonic() + request.timeout_s
        path = self._invoke_paths.get(target_model)
        if path is None:
            path = self._invoke_path(target_model)
        retried = False
        while True:
            instance = self._holder(target_model)
            if instance is None:
                instance = await self._wait_for_load(target_model, deadline)
                if instance is None:
                    continue  # unloaded again before this call reached it
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                raise api.not_ready(self.spec.container, target_model)
            instance_id = instance.instance_id
            copy = self._cache.begin_call(instance_id, target_model)
            try:
                reply = await instance.invoke(
                    ContainerRequest(
                        body=request.body,
                        headers=request.headers,
                        timeout_s=remaining,
                        path=path,
                        max_response_bytes=request.max_response_bytes,
                        body_length=request.body_length,
                    )
                )
            except ContainerRefused:
                # The instance went down, and the model with it: load it elsewhere, once.
                self._lost(instance_id, copy)
                if retried:
                    raise
                retried = True
                continue
            finally:
                if self._cache.end_call(instance_id, copy):
                    self._after_calls(instance, target_model)
            if (
                reply.status == 404
                and not retried
                # A copy another call already found lost: this 404 is the container's too.
                and (
                    not self._cache.current(instance_id, copy)
                    or not await self._still_loaded(instance, target_model)
                )
            ):
                self._lost(instance_id, copy)
                retried = True
                continue
            return reply

    async def close(self) -> None:
        self._closed = True
        tasks: list[asyncio.Future[Any]] = [*self._loads.values(), *self._spreading.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._unloads.values(), return_exceptions=True)
        await self._files.close()

    # -- sagehost's own operations ------------------------------------------------------------

    async def preload(self, target_model: str, *, pin: bool = False) -> None:
        """Load ``target_model`` now (waiting up to the load timeout); ``pin`` keeps it loaded
        until :meth:`unpin`."""
        check_target_model(target_model)
        if pin:
            self._cache.pin(target_model)
        while self._holder(target_model) is None:
            await self._wait_for_load(target_model, None)

    def unpin(self, target_model: str) -> bool:
        """False if the model was not pinned."""
        return self._cache.unpin(target_model)

    def pinned(self, target_model: str) -> bool:
        return self._cache.pinned(target_model)

    def describe(self) -> dict[str, object]:
        """What is loaded where, and what is on disk, for ``SageHost.ListLoadedModels``."""
        instances = []
        for instance in self._fleet.instances:
            copies = self._cache.copies(instance.instance_id)
            instances.append(
                {
                    "InstanceId": instance.instance_id,
                    "Ready": instance.ready,
                    "MemoryUsedBytes": self._cache.used(instance.instance_id),
                    "Models": [
                        {
                            "TargetModel": c.target,
                            "ModelName": model_name(c.target),
                            "SizeBytes": c.charge,
                            "State": c.state.value,
                            "InFlight": c.in_use,
                            "Pinned": self._cache.pinned(c.target),
                        }
                        for c in copies
                    ],
                }
            )
        return {
            "MemoryBudgetBytes": self.spec.memory_budget,
            "DiskBudgetBytes": self.spec.disk_budget,
            "DiskUsedBytes": self._files.used,
            "ModelCacheSetting": "Enabled" if self.spec.cache_models else "Disabled",
            "PinnedModels": sorted(self._cache.pins),
            "Instances": instances,
            "Disk": [
                {"TargetModel": f.target_model, "SizeBytes": f.size, "Holders": f.holders}
                for f in self._files.cached()
            ],
        }

    # -- routing ------------------------------------------------------------------------------

    def _invoke_path(self, target: str) -> str:
        check_target_model(target)
        if len(self._invoke_paths) >= MAX_REMEMBERED_PATHS:
            self._invoke_paths.clear()  # bounded: TargetModels come from callers
        path = self._invoke_paths[target] = api.invoke_path(target)
        return path

    def _holder(self, target: str) -> Instance | None:
        """The least busy ready instance that holds ``target``."""
        holders = self._cache.holders(target)
        if not holders:
            return None
        best: Instance | None = None
        for instance in self._fleet.instances:
            if (
                instance.ready
                and instance.instance_id in holders
                and (best is None or instance.outstanding < best.outstanding)
            ):
                best = instance
        if best is not None and best.outstanding >= HOT_OUTSTANDING:
            self._spread(target, best)
        return best

    async def _wait_for_load(self, target: str, deadline: float | None) -> Instance | None:
        """Start or join the model's load; ``ModelNotReady`` if ``deadline`` passes first.
        Returns the instance it was loaded on, or None if it is no longer there."""
        task = self._loads.get(target)
        if task is None:
            if self._closed:
                raise NoHealthyInstance("The endpoint is being stopped or updated. Try again.")
            task = asyncio.ensure_future(self._load(target))
            self._loads[target] = task
            task.add_done_callback(lambda done: self._load_done(target, done))
        timeout = None if deadline is None else max(deadline - self._clock.monotonic(), 0.0)
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            raise api.not_ready(self.spec.container, target)
        if task.cancelled():
            raise NoHealthyInstance("The endpoint is being stopped or updated. Try again.")
        instance_id = task.result()
        copy = self._cache.copy(instance_id, target)
        if copy is None or copy.state is not CopyState.LOADED:
            return None
        return next(
            (i for i in self._fleet.instances if i.instance_id == instance_id and i.ready), None
        )

    def _load_done(self, target: str, task: asyncio.Task[str]) -> None:
        if self._loads.get(target) is task:
            del self._loads[target]
        if not task.cancelled() and task.exception() is not None:
            log.info("Loading model %s failed: %s", target, task.exception())

    # -- loading ------------------------------------------------------------------------------

    async def _load(self, target: str) -> str:
        """The one load of ``target``: returns the id of the instance now holding it.

        The files' hold taken here passes to the copy once it is loaded; until then a
        LOADING copy owns none, so whoever forgets it early never releases the files."""
        deadline = self._clock.monotonic() + self.spec.load_timeout_s
        try:
            async with asyncio.timeout(self.spec.load_timeout_s):
                await self._unloaded(target)
                try:
                    local = await self._files.acquire(target)
                except DeploymentFailed as error:
                    raise api.fetch_failed(self.spec.container, target, error.message) from None
                try:
                    return await self._place(local, deadline)
                except BaseException:
                    self._files.release(target)
                    raise
        except TimeoutError:
            raise self._timed_out(target) from None

    async def _place(self, local: LocalModel, deadline: float) -> str:
        target = local.target_model
        refused: set[str] = set()  # instances that answered 507 with nothing left to unload
        delay = 0.01
        wait_until = self._clock.monotonic() + self._instance_wait_s
        while True:
            # The container may still be dropping an abandoned load of the model.
            await self._unloaded(target)
            self._prune()
            holder = self._holder(target)
            if holder is not None:
                # An instance that went down holding the model is back: if it lost the model,
                # the call's 404 reloads it there.
                self._files.release(target)
                return holder.instance_id
            candidates = [c for c in self._candidates() if c.instance_id not in refused]
            placement = self._cache.place(target, local.size, candidates)
            if placement is None:
                if not candidates and self._clock.monotonic() >= wait_until:
                    raise NoHealthyInstance(
                        f"No instance of container {self.spec.container} is ready to load "
                        f"model {target}. Try again later."
                    )
                if candidates and not any(
                    self._cache.room_later(c.instance_id, local.size) for c in candidates
                ):
                    raise api.no_room(self.spec.container, local, self._cache.budget)
                # Wait for an instance to come up, or for calls on the models to finish.
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
                continue
            # No await since place(): the instance and the reserved copy are both there.
            instance_id = placement.instance_id
            instance = self._instance(instance_id)
            copy = self._cache.copy(instance_id, target)
            assert copy is not None
            reply = await self._send_load(instance, placement.victims, copy, local, deadline)
            if api.loaded(reply):
                if self._cache.current(instance_id, copy):
                    self._cache.loaded(instance_id, target)
                    log.info("Loaded model %s on %s", target, instance_id)
                else:
                    self._files.release(target)  # its instance left the fleet meanwhile
                return instance_id
            self._cache.discard(instance_id, copy)
            if reply.status != 507:
                raise api.load_refused(self.spec.container, target, reply)
            # The container is out of memory: unload one more model there and try again.
            victims = self._cache.victims(instance_id, 1)
            if not victims:
                refused.add(instance_id)
                if len(refused) >= len(self._fleet.instances):
                    raise api.load_refused(self.spec.container, target, reply)
                continue
            self._cache.unloading(instance_id, victims[0])
            await self._unload(instance, victims[0])

    async def _send_load(
        self,
        instance: Instance,
        victims: tuple[str, ...],
        copy: Copy,
        local: LocalModel,
        deadline: float | None,
    ) -> ContainerResponse:
        """Unload ``victims``, then ``POST /models`` (by ``deadline``, when the load has one).

        Whatever ends this early (no answer, or the load's own timer cancelling it) forgets
        the reserved ``copy``, and a container that got the request is told in the background
        to drop what it may have half loaded."""
        sent = False
        try:
            await asyncio.gather(*(self._unload(instance, v) for v in victims))
            timeout_s = self.spec.load_timeout_s
            if deadline is not None:
                remaining = deadline - self._clock.monotonic()
                timeout_s = max(remaining - LOAD_MARGIN_S, remaining / 2)
            sent = True
            return await instance.invoke(api.load_request(local, timeout_s))
        except BaseException as error:
            self._cache.discard(instance.instance_id, copy)
            if sent and not self._closed:
                self._start_unload(instance, copy.target, None).add_done_callback(_retrieve)
            if isinstance(error, ContainerTimeout):
                raise self._timed_out(copy.target) from None
            if isinstance(error, ContainerUnreachable):
                raise api.load_broken(self.spec.container, copy.target, error.message) from None
            raise

    def _timed_out(self, target: str) -> SagehostError:
        return api.load_timed_out(self.spec.container, target, self.spec.load_timeout_s)

    def _spread(self, target: str, holder: Instance) -> None:
        """A hot model: load one more copy in the background where it fits without evicting."""
        if target in self._spreading or target in self._loads or self._closed:
            return
        if any(t == target for _, t in self._unloads):
            return  # a reload must not overtake an unload
        copy = self._cache.copy(holder.instance_id, target)
        if copy is None or not self.spec.cache_models:
            return
        instance_id = self._cache.spare(target, copy.charge, self._candidates())
        if instance_id is None:
            return
        reserved = self._cache.reserve(instance_id, target, copy.charge)
        task = asyncio.ensure_future(self._load_copy(instance_id, reserved))
        self._spreading[target] = task
        task.add_done_callback(lambda _: self._spreading.pop(target, None))

    async def _load_copy(self, instance_id: str, copy: Copy) -> None:
        target = copy.target
        acquired = kept = False
        try:
            local = await self._files.acquire(target)
            acquired = True
            reply = await self._send_load(self._instance(instance_id), (), copy, local, None)
            if api.loaded(reply) and self._cache.current(instance_id, copy):
                self._cache.loaded(instance_id, target)
                kept = True
                log.info("Loaded hot model %s on one more instance, %s", target, instance_id)
        except SagehostError as error:
            log.info("Loading one more copy of model %s failed: %s", target, error.message)
        finally:
            if not kept:
                self._cache.discard(instance_id, copy)
                if acquired:
                    self._files.release(target)

    # -- unloading ----------------------------------------------------------------------------

    def _after_calls(self, instance: Instance, target: str) -> None:
        """With ``ModelCacheSetting=Disabled`` a model goes as soon as its last call ends."""
        if self.spec.cache_models or self._cache.pinned(target):
            return
        copy = self._cache.copy(instance.instance_id, target)
        if copy is None or copy.state is not CopyState.LOADED or copy.in_use:
            return
        self._cache.unloading(instance.instance_id, target)
        task = asyncio.ensure_future(self._unload(instance, target))
        task.add_done_callback(_retrieve)

    async def _unload(self, instance: Instance, target: str) -> None:
        """``DELETE /models/<name>`` for a copy already marked UNLOADING; the copy is forgotten
        (and its files released) whatever the container answers."""
        copy = self._cache.copy(instance.instance_id, target)
        await asyncio.shield(self._start_unload(instance, target, copy))

    def _start_unload(
        self, instance: Instance, target: str, copy: Copy | None
    ) -> asyncio.Task[None]:
        """The one ``DELETE`` of ``target`` on ``instance``; ``copy`` (None for a load given
        up) is forgotten when it ends. Loads of ``target`` wait for it (:meth:`_unloaded`)."""
        key = (instance.instance_id, target)
        task = self._unloads.get(key)
        if task is None:
            task = asyncio.ensure_future(self._delete(instance, target, copy))
            self._unloads[key] = task
            task.add_done_callback(lambda done: self._unload_done(key, done))
        return task

    def _unload_done(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        if self._unloads.get(key) is task:
            del self._unloads[key]

    async def _delete(self, instance: Instance, target: str, copy: Copy | None) -> None:
        try:
            reply = await instance.invoke(api.unload_request(target))
            if not api.unloaded(reply):
                log.warning(
                    "Unloading model %s from %s answered %d",
                    target,
                    instance.instance_id,
                    reply.status,
                )
            else:
                log.info("Unloaded model %s from %s", target, instance.instance_id)
        except (ContainerUnreachable, ContainerTimeout) as error:
            log.warning(
                "Unloading model %s from %s failed: %s", target, instance.instance_id, error
            )
        finally:
            if copy is not None and self._cache.discard(instance.instance_id, copy):
                self._files.release(target)

    async def _unloaded(self, target: str) -> None:
        """Wait for unloads of ``target`` still in flight, so a reload never overtakes one."""
        pending = [task for (_, t), task in self._unloads.items() if t == target]
        if pending:
            await asyncio.gather(*(asyncio.shield(t) for t in pending), return_exceptions=True)

    def _lost(self, instance_id: str, copy: Copy) -> None:
        """The container no longer holds the model (it restarted, or died). A copy still
        loading holds no files: its load releases them."""
        if self._cache.discard(instance_id, copy) and copy.state is not CopyState.LOADING:
            self._files.release(copy.target)

    async def _still_loaded(self, instance: Instance, target: str) -> bool:
        """Whether a 404 came from the model itself (it is still listed) or from a container
        that lost it."""
        try:
            reply = await instance.invoke(api.status_request(target))
        except (ContainerUnreachable, ContainerTimeout):
            return False
        return reply.status != 404

    # -- helpers ------------------------------------------------------------------------------

    def _candidates(self) -> list[Candidate]:
        return [Candidate(i.instance_id, i.outstanding) for i in self._fleet.instances if i.ready]

    def _instance(self, instance_id: str) -> Instance:
        for instance in self._fleet.instances:
            if instance.instance_id == instance_id:
                return instance
        raise NoHealthyInstance(f"Instance {instance_id} left the fleet. Try again.")

    def _prune(self) -> None:
        """Forget the copies of instances that left the fleet (a scale-in)."""
        present = {i.instance_id for i in self._fleet.instances}
        for instance_id in self._cache.instances():
            if instance_id not in present:
                for copy in self._cache.copies(instance_id):
                    self._lost(instance_id, copy)


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("Unloading a model failed: %s", task.exception())


def model_hosts(
    files: Callable[[MultiModelSpec], ModelFiles], clock: Clock, *, instance_wait_s: float = 10.0
) -> ModelHostFactory:
    """The factory the control plane builds each multi-model variant's host with; ``files``
    gives the variant its disk cache."""

    def build(spec: MultiModelSpec, fleet: Fleet) -> MultiModelHost:
        return MultiModelHost(spec, fleet, files(spec), clock, instance_wait_s=instance_wait_s)

    return build
