"""The worker adapter: model containers run as supervised local processes (or Docker, or a URL)."""

from sagehost.workers.pool import ProcessWorkerPool
from sagehost.workers.settings import RestartPolicy, WorkerSettings

__all__ = ["ProcessWorkerPool", "RestartPolicy", "WorkerSettings"]
