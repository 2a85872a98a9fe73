"""A moto server on a free loopback port: the S3 (and SNS) peer for tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sagehost.testing.server import free_port


@contextmanager
def running_moto(timeout: float = 30.0) -> Iterator[str]:
    """Start ``python -m moto.server`` and yield its endpoint URL once it answers."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):  # noqa: S310
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.05)
        yield endpoint
    finally:
        server.terminate()
        server.wait()


def moto_client(endpoint: str, service: str = "s3") -> Any:
    """A boto3 client of the moto server at ``endpoint``."""
    import boto3

    session: Any = boto3.session.Session()
    return session.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="moto",
        aws_secret_access_key="moto",  # noqa: S106 - moto accepts any credentials
    )


def moto_environment(endpoint: str, *services: str) -> dict[str, str]:
    """The environment of a sagehost server that reaches ``services`` (``S3``, ``SNS``) at
    the moto server at ``endpoint``, with moto's credentials."""
    return {
        **os.environ,
        **{f"AWS_ENDPOINT_URL_{service}": endpoint for service in services},
        "AWS_ACCESS_KEY_ID": "moto",
        "AWS_SECRET_ACCESS_KEY": "moto",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
