"""sagehost's own CPU per InvokeEndpoint, without the HTTP server or the network noise.

Builds the real application (``server.build``), deploys an endpoint on the lean echo container
(bench/containers/echo_protocol.py) and calls the gateway's ASGI entry point directly with one
SigV4-signed request, ``--calls`` times, on one event loop. What is timed is the process's CPU
per call: SigV4, validation, routing, the container client and the response messages; uvicorn's
HTTP parsing and socket writes are not included (see bench/invoke.py for the whole path).
``--profile`` prints cProfile's top functions instead. Usage::

    python bench/inprocess.py --calls 20000 --runs 5
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import signed, start_container  # bench/common.py; run as a script

from sagehost.config import Settings
from sagehost.core.invocation import Caller
from sagehost.server import build

HERE = Path(__file__).resolve().parent
BODY = b'{"inputs": [[5.1, 3.5, 1.4, 0.2]]}'


def request(url: str, path: str) -> tuple[dict[str, Any], list[tuple[bytes, bytes]]]:
    headers = signed(f"{url}{path}", BODY, {"Content-Type": "application/json"})
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"host", url.split("://", 1)[1].encode()))
    raw.append((b"content-length", str(len(BODY)).encode()))
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": raw,
        "client": ("127.0.0.1", 50000),
    }
    return scope, raw


async def run(calls: int, runs: int, profile: bool, container_url: str, tmp: Path) -> None:
    app = build(Settings(data_dir=tmp / "data", describe_settle_s=20.0))
    try:
        caller = Caller("000000000000", "us-east-1")
        control = app.control
        await control.handle(
            "CreateModel",
            caller,
            {"ModelName": "echo", "PrimaryContainer": {"Image": f"url:{container_url}"}},
        )
        await control.handle(
            "CreateEndpointConfig",
            caller,
            {
                "EndpointConfigName": "echo",
                "ProductionVariants": [
                    {"VariantName": "AllTraffic", "ModelName": "echo", "InitialInstanceCount": 1}
                ],
            },
        )
        await control.handle(
            "CreateEndpoint", caller, {"EndpointName": "echo", "EndpointConfigName": "echo"}
        )
        described = await control.handle("DescribeEndpoint", caller, {"EndpointName": "echo"})
        assert described["EndpointStatus"] == "InService", described
        scope, _ = request("http://127.0.0.1:8080", "/endpoints/echo/invocations")
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": BODY, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        async def one_run() -> float:
            statuses.clear()
            started = time.process_time()
            for _ in range(calls):
                await app.gateway(dict(scope), receive, send)
            spent = time.process_time() - started
            assert statuses == [200] * calls, statuses[:3]
            return 1e6 * spent / calls

        await one_run()  # warm
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await one_run()
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            return
        figures = [await one_run() for _ in range(runs)]
        print(
            f"sagehost CPU per call (no HTTP server): median {statistics.median(figures):.1f} µs "
            f"over {runs} runs of {calls} ({', '.join(f'{f:.1f}' for f in figures)})"
        )
    finally:
        await app.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        container, url = start_container(
            [sys.executable, str(HERE / "containers" / "echo_protocol.py")], tmp
        )
        try:
            import uvloop

            uvloop.run(run(args.calls, args.runs, args.profile, url, tmp))
        finally:
            container.terminate()
            container.wait()


if __name__ == "__main__":
    main()
