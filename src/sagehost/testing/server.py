"""Start a real ``sagehost serve`` process on a free loopback port and wait until it answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

DEV_KEY = "test"
DEV_SECRET = "test"  # noqa: S105 - the documented dev secret
DEV_ACCOUNT = "000000000000"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def write_credentials(path: Path, *accounts: tuple[str, ...]) -> Path:
    """Write a ``--credentials`` file of ``accounts``, each (account id, access key id,
    secret access key[, session token]), and return its path."""
    fields = ("id", "access_key_id", "secret_access_key", "session_token")
    tables = [
        "[[account]]\n" + "".join(f'{k} = "{v}"\n' for k, v in zip(fields, account, strict=False))
        for account in accounts
    ]
    path.write_text("\n".join(tables))
    return path


@dataclass
class RunningServer:
    data_dir: Path
    port: int
    args: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        command = [
            sys.executable,
            "-m",
            "sagehost",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=self.env or dict(os.environ)
        )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.02
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"sagehost exited with {self.process.returncode}:\n{self.log_text()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as reply:  # noqa: S310
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        raise TimeoutError(f"sagehost did not answer /ping within {timeout} s:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Stop the server; returns its exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if self._log is not None:
            self._log.close()
        return code

    def client(
        self,
        service: str,
        *,
        key: str = DEV_KEY,
        secret: str = DEV_SECRET,
        token: str | None = None,
        region: str = "us-east-1",
        **config: Any,
    ) -> Any:
        """A boto3 client of this server that never retries; ``config`` goes to its Config."""
        import boto3
        from botocore.config import Config

        session: Any = boto3.session.Session()
        return session.client(
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            aws_session_token=token,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, **config),
        )
