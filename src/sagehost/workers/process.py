"""Worker processes: spawn one in its own process group, read its log tail, stop the whole group.

A worker writes straight into its log file (no pipe through our event loop): a chatty model can
never stall on a busy gateway, and the last lines before a crash are on disk even if sagehost
itself dies. The FailureReason's log tail is read back from the file, from where this run began.

On Linux each worker also asks the kernel for SIGKILL when its parent dies (PR_SET_PDEATHSIG),
so even a SIGKILL of sagehost leaves no orphan holding a port and a GPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_GROUP_POLL_S = 0.05
LOG_TAIL_BYTES = 4096


class WorkerProcess:
    """The handle of one spawned worker; ``exited`` completes with its exit status."""

    def __init__(
        self, proc: asyncio.subprocess.Process, log_path: Path | None, log_start: int
    ) -> None:
        self._proc = proc
        self.log_path = log_path
        self._log_start = log_start
        self.exited: asyncio.Task[int] = asyncio.ensure_future(proc.wait())

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def log_tail(self, limit: int = LOG_TAIL_BYTES) -> str:
        """The last ``limit`` bytes this run wrote to the log, decoded leniently."""
        if self.log_path is None:
            return ""
        try:
            with open(self.log_path, "rb") as log:
                end = log.seek(0, os.SEEK_END)
                log.seek(max(self._log_start, end - limit))
                data = log.read(limit)
        except OSError:
            return ""
        return data.decode("utf-8", errors="replace").strip()

    async def stop(self, grace_s: float) -> None:
        """SIGTERM the group, wait up to ``grace_s`` for it to empty, then SIGKILL what is left.

        A leader that already exited gets no grace: what is left of its group is killed at once.
        Safe to call more than once.
        """
        if self._proc.returncode is None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace_s
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), grace_s)
            # Children of the leader may outlive it; they get the rest of the grace. Nothing
            # signals when non-children exit, hence the poll.
            while self._group_alive() and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(_GROUP_POLL_S)
        self._signal_group(signal.SIGKILL)
        await asyncio.shield(self.exited)

    def _signal_group(self, signum: int) -> None:
        # The leader's pid is the group id (start_new_session); the id stays reserved while any
        # member lives, so this cannot reach an unrelated group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signum)

    def _group_alive(self) -> bool:
        try:
            os.killpg(self._proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return _live_member(self._proc.pid)


async def spawn(
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: Path | None,
    *,
    pass_fds: Sequence[int] = (),
) -> WorkerProcess:
    """Start ``argv`` with output appended to ``log_path`` (or, with None, to this process's
    own output) and the descriptors ``pass_fds`` inherited; raises OSError if it cannot start.

    Call this on the event loop's thread: PR_SET_PDEATHSIG fires when the *thread* that forked
    the child ends, so spawning from a short-lived worker thread would kill the child with it.
    """
    log: int | None = None
    start = 0
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if log is not None:
            start = os.lseek(log, 0, os.SEEK_END)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=None if log is None else subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
            preexec_fn=die_with_parent(),
            pass_fds=tuple(pass_fds),
        )
    finally:
        if log is not None:
            os.close(log)
    return WorkerProcess(proc, log_path, start)


def die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    # Loaded before the fork: after it, only async-signal-safe work belongs in the child.
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def child_setup() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return child_setup


def _live_member(pgid: int) -> bool:
    """Whether the group has a member that is not a zombie.

    An orphan that exited stays a zombie until init reaps it, and some inits (in containers, VMs)
    take seconds; a zombie still answers kill(), yet it holds nothing worth waiting for.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            with open(os.path.join(entry.path, "stat"), "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command name: state, ppid, pgrp.
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def free_port(host: str) -> int:
    """A port on ``host`` that nothing listens on right now (the worker may still lose a race)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_was_taken(log_tail: str) -> bool:
    """Whether a worker that died at start-up most likely lost the race for its port."""
    text = log_tail.lower()
    return any(sign in text for sign in ("address already in use", "eaddrinuse", "errno 98"))
