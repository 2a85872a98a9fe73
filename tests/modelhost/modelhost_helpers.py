"""Helpers for the modelhost tests: real ``python -m sagehost.modelhost`` processes on loopback,
and small HTTP clients.

Readiness is GET /ping polled until 200, with a deadline; never a fixed sleep or a log line.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
START_TIMEOUT = 20.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(
    port: int,
    method: str,
    path: str,
    body: bytes | str = b"",
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body.encode() if isinstance(body, str) else body
        conn.request(
            method, path, body=data if method != "GET" else None, headers=dict(headers or {})
        )
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


class StreamReader:
    """A raw HTTP/1.1 client that reports chunk boundaries exactly as the server sent them."""

    def __init__(self, port: int, body: bytes, headers: Mapping[str, str], timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        head = f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.sock.sendall(head.encode() + b"\r\n" + body)
        self.file = self.sock.makefile("rb")
        status_line = self.file.readline()
        self.status = int(status_line.split()[1])
        self.headers: dict[str, str] = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def read_chunk(self) -> bytes | None:
        """The next chunk, None at the terminating chunk; EOFError if the connection dropped."""
        size_line = self.file.readline()
        if not size_line:
            raise EOFError("connection closed before the terminating chunk")
        size = int(size_line.strip(), 16)
        data = self.file.read(size + 2)
        if len(data) < size + 2:
            raise EOFError("connection closed inside a chunk")
        return data[:-2] if size else None

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@dataclass
class Host:
    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path

    def call(self, method: str, path: str, body: bytes | str = b"", **headers: str) -> Reply:
        return call(
            self.port, method, path, body, {k.replace("_", "-"): v for k, v in headers.items()}
        )

    def invoke(self, body: bytes | str, headers: Mapping[str, str] | None = None) -> Reply:
        return call(self.port, "POST", "/invocations", body, headers)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def ping_status(self) -> int | None:
        try:
            return call(self.port, "GET", "/ping", timeout=2.0).status
        except OSError:
            return None

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"modelhost exited with {self.proc.returncode}:\n{self.stderr()}"
                )
            if self.ping_status() == 200:
                return
            time.sleep(0.02)
        raise AssertionError(f"modelhost not ready after {timeout}s:\n{self.stderr()}")

    def wait_exit(self, timeout: float = START_TIMEOUT) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Launcher:
    root: Path
    hosts: list[Host] = field(default_factory=list)

    def model_dir(self, files: Mapping[str, str], name: str = "model") -> Path:
        """Write ``files`` (relative path -> dedented text) into a fresh model directory."""
        model_dir = self.root / name
        for rel, text in files.items():
            path = model_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        model_dir.mkdir(parents=True, exist_ok=True)
        return model_dir

    def start(
        self,
        model_dir: Path,
        env: Mapping[str, str] | None = None,
        *,
        wait: bool = True,
        pythonpath_first: Path | None = None,
    ) -> Host:
        port = free_port()
        child_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "SAGEHOST_"))
        }
        paths = [str(SRC)] if pythonpath_first is None else [str(pythonpath_first), str(SRC)]
        child_env |= {
            "PYTHONPATH": os.pathsep.join(paths),
            "SAGEHOST_MODEL_DIR": str(model_dir),
            "SAGEMAKER_BIND_TO_PORT": str(port),
            **(env or {}),
        }
        stderr_path = self.root / f"{model_dir.name}-{port}.stderr"
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sagehost.modelhost"],
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        host = Host(proc, port, stderr_path)
        self.hosts.append(host)
        if wait:
            host.wait_ready()
        return host

    def stop_all(self) -> None:
        # Signal every process first so their graceful shutdowns overlap.
        for host in self.hosts:
            if host.proc.poll() is None:
                host.proc.send_signal(signal.SIGTERM)
        for host in self.hosts:
            host.stop()
