"""Settings: one frozen object built by the CLI or a test. Nothing here reads the environment."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".sagehost")
    credentials_file: Path | None = None
    demo: bool = False
    region: str = "us-east-1"  # region of the demo endpoint's ARNs
    # SigV4 clock window either side of now.
    max_skew_s: float = 900.0
    # How long DescribeEndpoint waits for a deployment in progress to settle (0: never wait).
    describe_settle_s: float = 20.0
    # Default health-check budget of a new fleet (ContainerStartupHealthCheckTimeoutInSeconds).
    startup_timeout_s: float = 240.0
    # Total time a response stream may run (InvokeEndpointWithResponseStream); AWS documents no
    # value, 8 minutes is the commonly cited one.
    stream_limit_s: float = 480.0
    # How long an invocation waits for a healthy instance before answering ServiceUnavailable.
    instance_wait_s: float = 10.0
    # On shutdown: how long in-flight requests may take, and how long workers get after SIGTERM.
    shutdown_timeout_s: float = 30.0
    worker_stop_grace_s: float = 10.0
    log_level: str = "info"
    # Directories that file:// async inputs and outputs may use. Without --credentials and
    # with none given, any path is allowed (a single-user dev server).
    file_roots: tuple[Path, ...] = ()
    # DOCKER_HOST of the environment sagehost was started in (the CLI reads it).
    docker_host: str | None = None
    # Multi-model endpoints, where the endpoint config sets no budget: the memory each instance
    # may fill with loaded models (charged with their extracted size), and the disk each
    # multi-model variant may fill with downloaded models, in MiB.
    mme_memory_mb: float = 2048.0
    mme_disk_mb: float = 10240.0
    # Processes serving the port: the primary, which owns everything, and replicas that serve
    # plain InvokeEndpoint calls from a copy of its routing table (invoke/replication.py).
    gateway_processes: int = 1
    # How long a finished async job's record (SageHost.DescribeAsyncInference) is kept; its
    # result stays where it was written. None keeps every record.
    job_retention_s: float | None = 7 * 24 * 3600.0
    # How often the primary looks for changes the replicas must copy (instances that became
    # ready or went down); operations that move calls elsewhere copy them before they return.
    route_refresh_s: float = 0.05

    def is_loopback(self) -> bool:
        return host_is_loopback(self.host)


def host_is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
