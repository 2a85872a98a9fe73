"""The ``sagehost`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sagehost import __version__
from sagehost.cli import models
from sagehost.cli.remote import print_answer
from sagehost.config import Settings


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="sagehost", description="Run Amazon SageMaker endpoints anywhere."
    )
    root.add_argument("--version", action="version", version=f"sagehost {__version__}")
    commands = root.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the runtime API and the control plane")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".sagehost"),
        help="state directory (default ./.sagehost)",
    )
    serve.add_argument(
        "--credentials",
        type=Path,
        metavar="FILE",
        help="TOML file of [[account]] tables; without it only test/test on loopback is accepted",
    )
    serve.add_argument("--demo", action="store_true", help="deploy the demo endpoint 'demo'")
    serve.add_argument("--region", default="us-east-1", help="region in the demo endpoint's ARNs")
    serve.add_argument(
        "--describe-settle",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="how long DescribeEndpoint waits for a deployment in progress (default 20, 0 = never)",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long in-flight requests may run after SIGTERM (default 30)",
    )
    serve.add_argument(
        "--startup-timeout",
        type=float,
        default=240.0,
        metavar="SECONDS",
        help="health-check budget of variants that set none (default 240)",
    )
    serve.add_argument(
        "--stream-limit",
        type=float,
        default=480.0,
        metavar="SECONDS",
        help="total time a response stream may run (default 480)",
    )
    serve.add_argument(
        "--file-root",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a directory file:// async inputs and outputs may use (repeatable)",
    )
    serve.add_argument(
        "--mme-memory-mb",
        type=models.positive_mib,
        default=2048.0,
        metavar="MIB",
        help="memory each instance of a multi-model endpoint may fill with loaded models, "
        "charged with their extracted size (default 2048)",
    )
    serve.add_argument(
        "--mme-disk-mb",
        type=models.positive_mib,
        default=10240.0,
        metavar="MIB",
        help="disk each multi-model variant may fill with downloaded models (default 10240)",
    )
    serve.add_argument(
        "--job-retention",
        type=_not_negative,
        default=7 * 24 * 3600.0,
        metavar="SECONDS",
        help="how long a finished async job stays in `sagehost jobs` and "
        "SageHost.DescribeAsyncInference; its result stays where it was written "
        "(default 604800, a week; 0 keeps every job)",
    )
    serve.add_argument(
        "--gateway-processes",
        type=_processes,
        default=1,
        metavar="N",
        help="processes serving the port (default 1), or auto for one per CPU: the primary "
        "plus N-1 replicas that serve plain InvokeEndpoint calls on more cores "
        "(docs/architecture.md)",
    )
    serve.add_argument(
        "--route-refresh",
        type=_positive,
        default=0.05,
        metavar="SECONDS",
        help="with gateway replicas: how often instance changes are copied to them "
        "(default %(default)s)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    models.add_parser(commands)
    jobs = commands.add_parser("jobs", help="show async inference jobs of a running server")
    jobs.add_argument(
        "--url", default="http://127.0.0.1:8080", help="the server (default %(default)s)"
    )
    jobs.add_argument("--region", default="us-east-1", help="region to sign for")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    listing = jobs_commands.add_parser("list", help="list jobs, newest first")
    listing.add_argument("--endpoint", help="only this endpoint's jobs (also shows its backlog)")
    listing.add_argument("--status", choices=["Queued", "Running", "Completed", "Failed"])
    listing.add_argument("--max", type=int, default=100, help="at most this many (1-100)")
    describe = jobs_commands.add_parser("get", help="one job by endpoint and InferenceId")
    describe.add_argument("endpoint")
    describe.add_argument("inference_id")
    return root


def _not_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def _processes(text: str) -> int:
    """A count of gateway processes, or ``auto``: one per CPU this process may run on."""
    if text == "auto":
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1
    try:
        return _at_least_one(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a count or auto, not {text!r}") from None


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def jobs_command(args: argparse.Namespace) -> int:
    if args.jobs_command == "get":
        target = "SageHost.DescribeAsyncInference"
        params: dict[str, object] = {
            "EndpointName": args.endpoint,
            "InferenceId": args.inference_id,
        }
    else:
        target = "SageHost.ListAsyncInferences"
        params = {"MaxResults": args.max}
        if args.endpoint:
            params["EndpointName"] = args.endpoint
        if args.status:
            params["StatusEquals"] = args.status
    return 1 if print_answer(args.url, target, params, args.region) is None else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "jobs":
        return jobs_command(args)
    if args.command == "models":
        return models.run(args)
    settings = Settings(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        credentials_file=args.credentials,
        demo=args.demo,
        region=args.region,
        describe_settle_s=args.describe_settle,
        shutdown_timeout_s=args.shutdown_timeout,
        startup_timeout_s=args.startup_timeout,
        stream_limit_s=args.stream_limit,
        file_roots=tuple(args.file_root),
        log_level=args.log_level,
        docker_host=os.environ.get("DOCKER_HOST"),
        mme_memory_mb=args.mme_memory_mb,
        mme_disk_mb=args.mme_disk_mb,
        gateway_processes=args.gateway_processes,
        job_retention_s=args.job_retention or None,
        route_refresh_s=args.route_refresh,
    )
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from sagehost import server  # imported late: `sagehost --help` stays fast

    try:
        server.run(settings)
    except server.ConfigurationError as error:
        print(f"sagehost: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
