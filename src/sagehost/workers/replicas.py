"""Gateway replica processes (``--gateway-processes``): spawned by the primary, sharing its
listening socket, restarted with backoff when one dies, stopped before the primary stops.

They are spawned as workers are (``workers.process``): each runs in a session of its own, so a
terminal's Ctrl-C reaches the primary only and the primary stops them in order, and each dies
with the primary (PR_SET_PDEATHSIG), so even a SIGKILL of the primary leaves none behind. Their
log lines go to the primary's output.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sagehost.workers.process import WorkerProcess, spawn
from sagehost.workers.settings import Backoff, RestartPolicy

log = logging.getLogger("sagehost.replicas")

TOKEN_ENV = "SAGEHOST_REPLICA_TOKEN"  # noqa: S105 - where the primary puts the feed token
_RESTART = RestartPolicy(initial_s=0.2, max_s=5.0, reset_after_s=50.0)


def listen(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket that another process may bind beside it (``SO_REUSEPORT``: the
    kernel then spreads new connections over the sockets evenly).

    The port is first bound without that option, so a port someone else holds is refused as
    usual rather than shared.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        address = probe.getsockname()  # the port chosen, if ``port`` was 0
    return listen_beside(address, family, backlog=backlog)


def listen_beside(
    address: tuple[Any, ...], family: int = socket.AF_INET, *, backlog: int = 2048
) -> socket.socket:
    """One more listening socket on ``address``, which ``listen`` bound first."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


class ReplicaProcesses:
    """``count`` replicas, each ``python -m sagehost.replica`` with ``args`` and ``--fd``: a
    socket of its own on the primary's address (``listen_beside``), which the primary closes
    once the replica has it, so that while a replica is down no connection waits on it."""

    def __init__(
        self,
        count: int,
        *,
        listening: socket.socket,
        args: Sequence[str],
        token: str,
        on_exit: Callable[[str], None],
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._names = [f"replica-{index + 1}" for index in range(count)]
        self._listening = listening
        self._args = list(args)
        self._token = token
        self._on_exit = on_exit
        self._python = python
        self._env = dict(os.environ if env is None else env)
        self._procs: dict[str, WorkerProcess] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._supervise(name), name=f"supervise {name}")
            for name in self._names
        ]

    async def stop(self, grace_s: float) -> None:
        """SIGTERM every replica (each finishes its requests in flight), SIGKILL after ``grace_s``."""
        self._stopping = True
        await asyncio.gather(*(process.stop(grace_s) for process in self._procs.values()))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def stopping(self) -> bool:
        return self._stopping  # a call, not a property: it changes while _supervise waits

    async def _supervise(self, name: str) -> None:
        backoff = Backoff(_RESTART)
        loop = asyncio.get_running_loop()
        while not self.stopping():
            try:
                process = await self._spawn(name)
            except OSError as error:
                log.error("gateway %s could not start: %s", name, error)
                await asyncio.sleep(backoff.next_delay())
                continue
            self._procs[name] = process
            started = loop.time()
            code = await process.exited
            self._on_exit(name)
            if self.stopping():
                return
            if loop.time() - started > _RESTART.reset_after_s:
                backoff.reset()  # it had been up a while: a fresh failure
            delay = backoff.next_delay()
            log.warning("gateway %s exited with status %s; restarting in %.1f s", name, code, delay)
            await asyncio.sleep(delay)

    async def _spawn(self, name: str) -> WorkerProcess:
        own = listen_beside(self._listening.getsockname(), self._listening.family)
        fd = own.fileno()
        argv = [self._python, "-m", "sagehost.replica", "--name", name, "--fd", str(fd)]
        try:
            return await spawn(
                [*argv, *self._args],
                {**self._env, TOKEN_ENV: self._token},
                None,  # its log lines go to the primary's output
                pass_fds=(fd,),
            )
        finally:
            own.close()  # the replica has its copy
