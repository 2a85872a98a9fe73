"""The composition root of a gateway replica process (``sagehost serve --gateway-processes N``).

The primary starts each replica as ``python -m sagehost.replica`` with the listening socket it
shares (``--fd``), the loopback port where the primary answers (``--primary-port``), the
settings authentication needs, and the routing feed's token in the environment. Nobody else
is meant to start one.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path

from sagehost.clock import SystemClock
from sagehost.config import Settings
from sagehost.core.live import EndpointDirectory
from sagehost.gateway.auth import Authenticator
from sagehost.gateway.forward import Primary
from sagehost.gateway.replica import ReplicaGateway
from sagehost.invoke.replication import RouteFollower
from sagehost.invoke.service import Invoker
from sagehost.protocol.runtime import RuntimeOperation
from sagehost.server import (
    ConfigurationError,
    GatewayServer,
    credential_store,
    http_config,
    service_model,
)
from sagehost.workers.client import ContainerClient
from sagehost.workers.remote import RemoteInstance
from sagehost.workers.replicas import TOKEN_ENV

log = logging.getLogger("sagehost.replica")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m sagehost.replica", description=__doc__)
    root.add_argument("--name", required=True)
    root.add_argument("--fd", type=int, required=True)
    root.add_argument("--primary-port", type=int, required=True)
    root.add_argument("--host", default="127.0.0.1")
    root.add_argument("--credentials", type=Path)
    root.add_argument("--region", default="us-east-1")
    root.add_argument("--max-skew", type=float, default=900.0)
    root.add_argument("--shutdown-timeout", type=float, default=30.0)
    root.add_argument("--drain", type=float, default=10.0)
    root.add_argument("--log-level", default="info")
    return root


async def serve(args: argparse.Namespace, token: str) -> None:
    settings = Settings(
        host=args.host,
        credentials_file=args.credentials,
        region=args.region,
        max_skew_s=args.max_skew,
    )
    store, _, loopback_only = credential_store(settings)
    clock = SystemClock()
    directory = EndpointDirectory()
    client = ContainerClient()
    primary = Primary(args.primary_port, token)
    follower = RouteFollower(
        directory,
        lambda after: primary.routes(args.name, after),
        lambda instance_id, url: RemoteInstance(instance_id, url, client),
        drain_s=args.drain,
    )
    runtime = service_model("sagemaker-runtime")
    app = ReplicaGateway(
        authenticator=Authenticator(
            store, clock, max_skew_s=settings.max_skew_s, loopback_only_keys=loopback_only
        ),
        # No waiting here for an instance to be ready: the primary does that.
        invoker=Invoker(directory, clock, instance_wait_s=0.0),
        invoke_endpoint=RuntimeOperation.from_model(runtime.operation_model("InvokeEndpoint")),
        primary=primary,
        default_region=settings.region,
    )
    server = GatewayServer(http_config(app, shutdown_timeout_s=args.shutdown_timeout))
    following = asyncio.create_task(follower.run(), name="follow routes")
    gc.collect()
    gc.freeze()
    try:
        await server.serve([socket.socket(fileno=args.fd)])
    finally:
        following.cancel()
        await asyncio.wait({following})
        await primary.close()
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    token = os.environ.pop(TOKEN_ENV, "")
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s [{args.name}]: %(message)s",
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] installs it on Linux and macOS
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(serve(args, token))
    except ConfigurationError as error:
        log.error("%s", error)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
