"""Pieces the benchmark scripts share."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from sagehost.testing.server import free_port


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


def start_container(
    command: list[str], tmp: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Run ``command`` as a container on a free port (``$SAGEMAKER_BIND_TO_PORT``, with
    ``env`` added), logging to ``tmp/container.log``; returns it and its URL once it answers."""
    port = free_port()
    log = open(tmp / "container.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        command,
        env={**os.environ, **(env or {}), "SAGEMAKER_BIND_TO_PORT": str(port)},
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ping(url)
    return process, url


def signed(url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
    """``headers`` and the SigV4 headers of a POST of ``body`` to ``url``, as the dev
    account (signed once, before any clock starts)."""
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(Credentials("test", "test"), "sagemaker", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def deploy_url(sm: Any, name: str, container: dict[str, Any]) -> None:
    """CreateModel of ``container``, and an endpoint of one instance of it, InService."""
    sm.create_model(ModelName=name, PrimaryContainer=container)
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"


def cpu_seconds(*pids: int) -> float:
    """User plus system CPU time the processes have used so far."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")
