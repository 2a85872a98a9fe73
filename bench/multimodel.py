"""Benchmark multi-model endpoints: a warm multi-model call against a single-model call to the
same container, the cold load of a small model, and the cost of eviction (100 models, room for
10 per instance).

One container (bench/containers/mme_echo_server.py) serves both endpoints through ``url:``
images, so the only difference between the paths is sagehost's multi-model routing. Warm
latency is wrk at concurrency 1 (paths alternate run by run, like bench/invoke.py); cold loads
and evictions are single calls over a keep-alive connection, each signed before its clock starts.

Needs ``wrk`` (Debian: ``apt-get install wrk``). Usage::

    python bench/multimodel.py --runs 5 --seconds 5 --models 100 --room 10
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from common import deploy_url, signed, start_container  # bench/common.py; run as a script

from invoke import BODY, wrk  # bench/invoke.py
from sagehost.testing.server import RunningServer, free_port

HERE = Path(__file__).resolve().parent
MODEL_BYTES = 64 * 1024  # weights per model: its memory charge
MIB = 1024 * 1024


def signed_call(url: str, endpoint: str, target: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if target is not None:
        headers["X-Amzn-SageMaker-Target-Model"] = target
    return signed(f"{url}/endpoints/{endpoint}/invocations", BODY, headers)


def write_models(prefix: Path, count: int) -> list[str]:
    targets = []
    for index in range(count):
        target = f"m{index:03d}.tar.gz"
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            data = os.urandom(MODEL_BYTES)  # incompressible: the tarball is as big as the model
            info = tarfile.TarInfo("weights.bin")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        (prefix / target).write_bytes(buffer.getvalue())
        targets.append(target)
    return targets


class Caller:
    """Single calls over one keep-alive connection, timed from the first byte sent."""

    def __init__(self, url: str) -> None:
        self._url = url
        host, port = url.removeprefix("http://").split(":")
        self._connection = http.client.HTTPConnection(host, int(port))

    def call_ms(self, endpoint: str, target: str) -> float:
        headers = signed_call(self._url, endpoint, target)
        started = time.perf_counter()
        self._connection.request(
            "POST", f"/endpoints/{endpoint}/invocations", body=BODY, headers=headers
        )
        reply = self._connection.getresponse()
        body = reply.read()
        elapsed = (time.perf_counter() - started) * 1000
        if reply.status != 200 or body != BODY:
            raise RuntimeError(f"{target}: {reply.status} {body[:200]!r}")
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--room", type=int, default=10, help="models that fit in an instance")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        prefix = tmp / "models"
        prefix.mkdir()
        targets = write_models(prefix, args.models)
        container, container_url = start_container(
            [sys.executable, str(HERE / "containers" / "mme_echo_server.py")], tmp
        )
        # Room for ``--room`` models per instance; every model stays on disk.
        memory_mb = (args.room + 0.5) * MODEL_BYTES / MIB
        server = RunningServer(
            data_dir=tmp / "data",
            port=free_port(),
            args=["--log-level", "warning", "--mme-memory-mb", f"{memory_mb:.6f}"],
        )
        server.start()
        try:
            sm = server.client("sagemaker")
            deploy_url(sm, "single", {"Image": f"url:{container_url}"})
            deploy_url(
                sm,
                "multi",
                {
                    "Image": f"url:{container_url}",
                    "Mode": "MultiModel",
                    "ModelDataUrl": prefix.as_uri() + "/",
                },
            )
            caller = Caller(server.url)
            cold = [caller.call_ms("multi", target) for target in targets[: args.room]]
            warm_paths = {
                "single-model": signed_call(server.url, "single", None),
                "multi-model": signed_call(server.url, "multi", targets[0]),
            }
            endpoint_url = {
                "single-model": f"{server.url}/endpoints/single/invocations",
                "multi-model": f"{server.url}/endpoints/multi/invocations",
            }
            warm: dict[str, list[dict[str, float]]] = {path: [] for path in warm_paths}
            for _ in range(args.runs):
                for path, headers in warm_paths.items():
                    warm[path].append(wrk(endpoint_url[path], headers, 1, args.seconds, tmp))
            caller = Caller(server.url)  # the first one idled out during the wrk runs
            first_pass = [caller.call_ms("multi", t) for t in targets[args.room :]]
            cycles = [caller.call_ms("multi", t) for t in targets]
            report(args, warm, cold, first_pass, cycles)
        finally:
            server.stop()
            container.terminate()
            container.wait()


def report(
    args: argparse.Namespace,
    warm: dict[str, list[dict[str, float]]],
    cold: list[float],
    first_pass: list[float],
    cycles: list[float],
) -> None:
    print(f"warm calls: wrk -c1, median of {args.runs} runs of {args.seconds:g} s each")
    for path, runs in warm.items():
        p50 = statistics.median(r["p50_ms"] for r in runs)
        rps = statistics.median(r["rps"] for r in runs)
        print(f"  {path:<13} p50 {p50:.3f} ms   {rps:,.0f} req/s")
    pairs = zip(warm["multi-model"], warm["single-model"], strict=True)
    added = statistics.median(m["p50_ms"] - s["p50_ms"] for m, s in pairs)
    print(f"  multi-model minus single-model p50 (median of paired runs): {added:+.3f} ms")
    kib = MODEL_BYTES // 1024
    print(f"cold load of a {kib} KiB model, no eviction ({len(cold)} models):")
    print(f"  median {statistics.median(cold):.2f} ms, max {max(cold):.2f} ms")
    print(f"{args.models} models, room for {args.room}: every call evicts one and loads one")
    print(
        f"  first pass (extract from the tarball too): median "
        f"{statistics.median(first_pass):.2f} ms over {len(first_pass)} calls"
    )
    print(
        f"  later passes (extracted models on disk): median {statistics.median(cycles):.2f} ms, "
        f"p90 {statistics.quantiles(cycles, n=10)[-1]:.2f} ms over {len(cycles)} calls"
    )


if __name__ == "__main__":
    main()
