"""The composition root: builds adapters, services and the ASGI app, and runs their lifecycle.

This is the only module that knows which adapters exist. Startup, serving and shutdown are
spelled out in :func:`serve` in the order they happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import botocore.session
import uvicorn
from botocore.model import ServiceModel

from sagehost.clock import SystemClock
from sagehost.config import Settings
from sagehost.control.deployer import Deployer, DeploySettings
from sagehost.control.plane import ControlPlane
from sagehost.core.errors import InvalidRequest
from sagehost.core.invocation import Caller
from sagehost.core.live import EndpointDirectory
from sagehost.core.ports import Account, CredentialStore
from sagehost.gateway.app import Gateway
from sagehost.gateway.auth import Authenticator
from sagehost.gateway.feed import WithRouteFeed
from sagehost.gateway.http import ASGIApp
from sagehost.invoke.for_jobs import EndpointModels
from sagehost.invoke.multimodel import model_hosts
from sagehost.invoke.observers import CallObservers
from sagehost.invoke.replication import RouteFeed
from sagehost.invoke.service import Invoker
from sagehost.jobs.runner import JobRunner
from sagehost.jobs.service import AsyncInference
from sagehost.protocol.control import ControlProtocol, extend_model
from sagehost.protocol.runtime import RuntimeOperation
from sagehost.storage.catalog import SqliteCatalog
from sagehost.storage.credentials import (
    DEV_ACCOUNT,
    CredentialsFileError,
    StaticCredentialStore,
    load_credentials,
)
from sagehost.storage.jobs import SqliteJobStore
from sagehost.storage.model_files import ModelFileStore
from sagehost.storage.notify import TopicNotifier
from sagehost.storage.objects import UrlObjectStore
from sagehost.workers.pool import ProcessWorkerPool
from sagehost.workers.replicas import ReplicaProcesses, listen
from sagehost.workers.settings import WorkerSettings

log = logging.getLogger("sagehost")

DEMO_ENDPOINT = "demo"
DEMO_STREAM_ENDPOINT = "demo-stream"
MULTI_MODEL_DIR = "multimodel"  # under the data dir: multi-model endpoints' model cache


class ConfigurationError(Exception):
    """Settings that sagehost refuses to start with; the message says why."""


@dataclass
class App:
    """Everything :func:`build` wires together, kept so that shutdown can undo it."""

    settings: Settings
    gateway: Gateway
    control: ControlPlane
    pool: ProcessWorkerPool
    catalog: SqliteCatalog
    accounts: tuple[Account, ...]
    runner: JobRunner
    jobs_store: SqliteJobStore
    observers: CallObservers | None = None
    feed: RouteFeed | None = None

    async def close(self) -> None:
        # Jobs in flight are abandoned, not lost: they are run again after the next start.
        await self.runner.stop()
        await self.control.endpoints.shutdown()
        if self.observers is not None:
            await self.observers.close()  # writes out the data captured so far
        await self.pool.shutdown()
        await self.jobs_store.close()
        self.catalog.close()


def credential_store(
    settings: Settings,
) -> tuple[CredentialStore, tuple[Account, ...], frozenset[str]]:
    if settings.credentials_file is not None:
        try:
            store = load_credentials(settings.credentials_file)
        except CredentialsFileError as error:
            raise ConfigurationError(str(error)) from None
        return store, store.accounts, frozenset()
    if not settings.is_loopback():
        raise ConfigurationError(
            f"refusing to listen on {settings.host} without --credentials: the dev credentials "
            "test/test are only accepted on a loopback address. Pass --credentials FILE "
            "(a TOML file of [[account]] tables) or listen on 127.0.0.1."
        )
    return (
        StaticCredentialStore([DEV_ACCOUNT]),
        (DEV_ACCOUNT,),
        frozenset({DEV_ACCOUNT.access_key_id}),
    )


def service_model(name: str) -> ServiceModel:
    """botocore's bundled model of ``name``, with sagehost's extensions."""
    loader = botocore.session.get_session().get_component("data_loader")
    return ServiceModel(extend_model(loader.load_service_model(name, "service-2")), name)


def build(settings: Settings) -> App:
    store, accounts, loopback_only = credential_store(settings)
    clock = SystemClock()
    sagemaker_model = service_model("sagemaker")
    runtime_model = service_model("sagemaker-runtime")
    data_dir = settings.data_dir.resolve()
    catalog = SqliteCatalog(data_dir / "catalog.sqlite3")
    directory = EndpointDirectory()
    # With gateway replicas, the routing table is copied to them, and an instance stops only
    # once none of them will call it again.
    feed = (
        RouteFeed(directory, tick_s=settings.route_refresh_s)
        if settings.gateway_processes > 1
        else None
    )
    pool = ProcessWorkerPool(
        WorkerSettings(
            data_dir=data_dir,
            python=sys.executable,
            stop_grace_s=settings.worker_stop_grace_s,
            docker_host=settings.docker_host,
            multi_model_dirs=(data_dir / MULTI_MODEL_DIR,),
        ),
        clock=clock,
        retire=feed.synced if feed is not None else None,
    )
    # file:// locations come from callers (async inputs and results, data capture): with several
    # accounts they are confined to the configured roots (none by default), so no account reads
    # or writes the server's files.
    objects = UrlObjectStore(
        file_roots=list(settings.file_roots)
        if settings.credentials_file is not None or settings.file_roots
        else None
    )
    observers = CallObservers(objects, clock)
    control = ControlPlane(
        catalog,
        clock,
        directory,
        Deployer(
            pool,
            DeploySettings(
                startup_timeout_s=settings.startup_timeout_s,
                mme_memory_mb=settings.mme_memory_mb,
                mme_disk_mb=settings.mme_disk_mb,
                model_hosts=model_hosts(
                    ModelFileStore(data_dir / MULTI_MODEL_DIR).cache,
                    clock,
                    instance_wait_s=settings.instance_wait_s,
                ),
            ),
        ),
        settle_s=settings.describe_settle_s,
        observers=observers,
        routes_changed=feed.synced if feed is not None else None,
    )
    invoker = Invoker(directory, clock, instance_wait_s=settings.instance_wait_s)
    jobs_store = SqliteJobStore(data_dir / "jobs.sqlite3")
    runner = JobRunner(
        store=jobs_store,
        objects=objects,
        notifier=TopicNotifier(),
        models=EndpointModels(directory, invoker),
        directory=directory,
        clock=clock,
        retention_s=settings.job_retention_s,
    )
    jobs = AsyncInference(jobs_store, runner, directory, clock)
    gateway = Gateway(
        authenticator=Authenticator(
            store, clock, max_skew_s=settings.max_skew_s, loopback_only_keys=loopback_only
        ),
        control=control,
        control_protocol=ControlProtocol(sagemaker_model, control.operations),
        invoker=invoker,
        invoke_endpoint=RuntimeOperation.from_model(
            runtime_model.operation_model("InvokeEndpoint")
        ),
        invoke_stream=RuntimeOperation.from_model(
            runtime_model.operation_model("InvokeEndpointWithResponseStream")
        ),
        invoke_async=RuntimeOperation.from_model(
            runtime_model.operation_model("InvokeEndpointAsync")
        ),
        jobs=jobs,
        stream_limit_s=settings.stream_limit_s,
        default_region=settings.region,
    )
    return App(
        settings, gateway, control, pool, catalog, accounts, runner, jobs_store, observers, feed
    )


def demo_model_dir(name: str = "iris") -> Path:
    return Path(str(resources.files("sagehost") / "demo" / name))


async def deploy_demo(app: App) -> None:
    """Deploy the demo endpoints through the real control-plane operations (idempotent).

    ``demo`` classifies iris flowers; ``demo-stream`` streams generated text token by token.
    """
    caller = Caller(app.accounts[0].account_id, app.settings.region)
    for endpoint, model in ((DEMO_ENDPOINT, "iris"), (DEMO_STREAM_ENDPOINT, "textgen")):
        steps = (
            (
                "CreateModel",
                {
                    "ModelName": endpoint,
                    "PrimaryContainer": {
                        "Image": "sagehost/python",
                        "ModelDataUrl": demo_model_dir(model).as_uri(),
                    },
                },
            ),
            (
                "CreateEndpointConfig",
                {
                    "EndpointConfigName": endpoint,
                    "ProductionVariants": [
                        {
                            "VariantName": "AllTraffic",
                            "ModelName": endpoint,
                            "InitialInstanceCount": 1,
                        }
                    ],
                },
            ),
            ("CreateEndpoint", {"EndpointName": endpoint, "EndpointConfigName": endpoint}),
        )
        for operation, params in steps:
            try:
                await app.control.handle(operation, caller, params)
            except InvalidRequest as exists:
                # After a restart the resources are already there and restore() brings them back.
                log.debug("demo: %s skipped: %s", operation, exists.message)
    # DescribeEndpoint waits for the deployment to settle, so the server answers /ping only
    # once the demo endpoints can serve: a script may invoke them right after startup.
    for endpoint in (DEMO_ENDPOINT, DEMO_STREAM_ENDPOINT):
        described = await app.control.handle("DescribeEndpoint", caller, {"EndpointName": endpoint})
        log.info("demo endpoint %r is %s", endpoint, described["EndpointStatus"])


class GatewayServer(uvicorn.Server):
    """uvicorn's server, minus the re-raise of the caught signal once serving ends, and with
    the gateway replicas stopped before it stops accepting.

    uvicorn re-delivers SIGTERM/SIGINT after its own shutdown so a bare process dies of it; that
    would kill sagehost before it stops its workers. Here the signal ends serving, the workers are
    stopped in :func:`serve`, and the process exits 0. Previous handlers are still restored.
    Replicas relay calls to the primary, so they finish theirs while the primary still serves.
    """

    replicas: ReplicaProcesses | None = None
    feed: RouteFeed | None = None
    grace_s = 30.0

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.stop_replicas()
        await super().shutdown(sockets=sockets)

    async def stop_replicas(self) -> None:
        if self.replicas is not None:
            await self.replicas.stop(self.grace_s)
            self.replicas = None
        if self.feed is not None:
            await self.feed.close()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def serve(settings: Settings) -> None:
    app = build(settings)
    server: GatewayServer | None = None
    try:
        # 1. Start up: endpoints from the data dir come back in the background.
        await app.control.endpoints.restore()
        await app.runner.start()
        if settings.demo:
            await deploy_demo(app)
        server, sockets = listen_for(app)
        log.info(
            "sagehost listening on http://%s:%d (data dir %s, %d gateway process%s)",
            settings.host,
            settings.port,
            settings.data_dir,
            settings.gateway_processes,
            "" if settings.gateway_processes == 1 else "es",
        )
        # Everything built so far lives as long as the server: freezing it keeps the cyclic
        # collector from re-scanning it on every pass (measured: about 5 % more calls a second).
        gc.collect()
        gc.freeze()
        # 2. Serve until SIGTERM/SIGINT. uvicorn stops accepting, lets in-flight requests finish
        #    within timeout_graceful_shutdown, and restores the previous signal handlers.
        await server.serve(sockets)
    finally:
        # 3. Stop deployments and every worker process.
        log.info("sagehost stopping workers")
        if server is not None and server.replicas is not None:
            await server.stop_replicas()  # if serving never began
        await app.close()


def listen_for(app: App) -> tuple[GatewayServer, list[socket.socket] | None]:
    """The HTTP server of ``app``. With gateway replicas it listens on sockets made here: the
    public one, which the replicas share, and a loopback one where they reach the primary."""
    settings = app.settings
    config = functools.partial(
        http_config,
        host=settings.host,
        port=settings.port,
        shutdown_timeout_s=settings.shutdown_timeout_s,
    )
    if app.feed is None:
        return GatewayServer(config(app.gateway)), None
    try:
        public = listen(settings.host, settings.port)
    except OSError as error:
        raise ConfigurationError(
            f"cannot listen on {settings.host}:{settings.port}: {error.strerror}"
        ) from None
    internal = listen("127.0.0.1", 0)
    token = secrets.token_urlsafe(32)
    host, port = internal.getsockname()[:2]
    server = GatewayServer(config(WithRouteFeed(app.gateway, app.feed, token, (host, port))))
    server.feed = app.feed
    server.replicas = ReplicaProcesses(
        settings.gateway_processes - 1,
        listening=public,
        args=replica_args(settings, port),
        token=token,
        on_exit=app.feed.forget,
    )
    server.grace_s = settings.shutdown_timeout_s
    app.feed.start()
    server.replicas.start()
    return server, [public, internal]


def http_config(
    app: ASGIApp, *, shutdown_timeout_s: float, host: str = "127.0.0.1", port: int = 8080
) -> uvicorn.Config:
    """uvicorn's settings for a gateway process (the primary or a replica)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        http="httptools",
        loop="none",
        access_log=False,
        log_config=None,
        server_header=False,
        # The dev key's loopback check reads the forwarding headers itself (gateway/auth.py):
        # uvicorn's rewriting of the client address would cost every call for nothing more.
        proxy_headers=False,
        timeout_graceful_shutdown=int(shutdown_timeout_s),
    )


def replica_args(settings: Settings, primary_port: int) -> list[str]:
    """What a replica (``sagehost.replica``) must know: how to authenticate and where the
    primary is."""
    args = [
        "--primary-port",
        str(primary_port),
        "--host",
        settings.host,
        "--region",
        settings.region,
        "--max-skew",
        repr(settings.max_skew_s),
        "--shutdown-timeout",
        repr(settings.shutdown_timeout_s),
        "--drain",
        repr(settings.worker_stop_grace_s),
        "--log-level",
        settings.log_level,
    ]
    if settings.credentials_file is not None:
        args += ["--credentials", str(settings.credentials_file.resolve())]
    return args


def run(settings: Settings) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] installs it on Linux and macOS
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))
