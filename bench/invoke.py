"""Benchmark InvokeEndpoint: sagehost with SigV4 against the same container called directly.

One echo container (the built-in runtime, ``python -m sagehost.modelhost``) is started; sagehost
is started and given an endpoint whose image is ``url:`` that container, so both paths end in
the very same process. wrk drives each path with the same body at each concurrency, alternating
paths run by run; the report gives the median of the runs.

Needs ``wrk`` (Debian: ``apt-get install wrk``). Usage::

    python bench/invoke.py --runs 5 --seconds 5 --concurrency 1 8 64
    python bench/invoke.py --concurrency 64 --container lean --gateway-processes 1 2
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import (  # bench/common.py; run as a script
    cpu_seconds,
    deploy_url,
    signed,
    start_container,
)

from sagehost.testing.server import RunningServer, free_port

HERE = Path(__file__).resolve().parent
BODY = b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}'
LUA = """
wrk.method = "POST"
wrk.body = {body}
{headers}
"""


def start_echo_container(tmp: Path, kind: str = "builtin") -> tuple[subprocess.Popen[bytes], str]:
    """``builtin``: the sagehost/python runtime with an echo inference.py; ``raw``: a bare
    ASGI echo server on uvicorn (bench/containers/echo_server.py); ``lean``: an echo server
    with no web framework (bench/containers/echo_protocol.py)."""
    scripts = {"raw": "echo_server.py", "lean": "echo_protocol.py"}
    command = (
        [sys.executable, "-m", "sagehost.modelhost"]
        if kind == "builtin"
        else [sys.executable, str(HERE / "containers" / scripts[kind])]
    )
    return start_container(command, tmp, {"SAGEHOST_MODEL_DIR": str(HERE / "models" / "echo")})


def signed_headers(url: str, endpoint: str) -> dict[str, str]:
    return signed(
        f"{url}/endpoints/{endpoint}/invocations", BODY, {"Content-Type": "application/json"}
    )


def wrk(
    url: str, headers: dict[str, str], concurrency: int, seconds: float, tmp: Path
) -> dict[str, float]:
    script = tmp / "post.lua"
    lines = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items())
    script.write_text(LUA.format(body=json.dumps(BODY.decode()), headers=lines))
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} failed responses:\n{out}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
    }


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument(
        "--container",
        choices=["builtin", "raw", "lean"],
        default="builtin",
        help="builtin: the sagehost/python runtime echoing; raw: a bare uvicorn echo server; "
        "lean: an echo server with no web framework",
    )
    parser.add_argument(
        "--gateway-processes",
        type=int,
        nargs="+",
        default=[1],
        help="sagehost serve --gateway-processes; with several values one server runs per "
        "value and the paths alternate (CPU per call counts every gateway process)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        container, container_url = start_echo_container(tmp, args.container)
        servers = {
            count: RunningServer(
                data_dir=tmp / f"data{count}",
                port=free_port(),
                args=["--log-level", "warning", "--gateway-processes", str(count)],
            )
            for count in args.gateway_processes
        }
        try:
            paths: list[tuple[str, str, dict[str, str], RunningServer | None]] = [
                (
                    "direct",
                    f"{container_url}/invocations",
                    {"Content-Type": "application/json"},
                    None,
                )
            ]
            for count, server in servers.items():
                server.start()
                deploy_url(server.client("sagemaker"), "echo", {"Image": f"url:{container_url}"})
                name = "sagehost" if len(servers) == 1 else f"sagehost x{count}"
                url = f"{server.url}/endpoints/echo/invocations"
                paths.append((name, url, signed_headers(server.url, "echo"), server))
            results: dict[tuple[str, int], list[dict[str, float]]] = {}
            for concurrency in args.concurrency:
                for _ in range(args.runs):
                    for path, url, headers, server in paths:
                        gateways = gateway_pids(server)
                        before = cpu_seconds(*gateways), cpu_seconds(container.pid)
                        result = wrk(url, headers, concurrency, args.seconds, tmp)
                        after = cpu_seconds(*gateways), cpu_seconds(container.pid)
                        calls = result["rps"] * args.seconds
                        result["sagehost_cpu_us"] = 1e6 * (after[0] - before[0]) / calls
                        result["container_cpu_us"] = 1e6 * (after[1] - before[1]) / calls
                        results.setdefault((path, concurrency), []).append(result)
            report(results, args)
        finally:
            for server in servers.values():
                if server.process is not None:
                    server.stop()
            container.terminate()
            container.wait()


def gateway_pids(server: RunningServer | None) -> list[int]:
    """The server's primary and its gateway replica processes (none for the direct path)."""
    if server is None or server.process is None:
        return []
    return [server.process.pid, *replica_pids(server.process.pid)]


def replica_pids(primary: int) -> list[int]:
    """The gateway replica processes the primary ``primary`` started."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat[1]) == primary and b"sagehost.replica" in command:
                found.append(int(entry.name))
    return found


def report(
    results: dict[tuple[str, int], list[dict[str, float]]], args: argparse.Namespace
) -> None:
    print(
        f"median of {args.runs} runs of {args.seconds:g} s each (wrk -t1), {args.container} "
        "container; sagehost xN: --gateway-processes N"
    )
    print("path          conc     req/s   p50 ms   p99 ms  sagehost CPU/call  container CPU/call")
    for (path, concurrency), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"{path:<13}{concurrency:>5}{med['rps']:>10.0f}{med['p50_ms']:>9.3f}{med['p99_ms']:>9.3f}"
            f"{med['sagehost_cpu_us']:>16.0f} us{med['container_cpu_us']:>16.0f} us"
        )
    names = sorted({path for path, _ in results if path != "direct"})
    for concurrency in args.concurrency:
        for name in names:
            pairs = list(
                zip(results[(name, concurrency)], results[("direct", concurrency)], strict=True)
            )
            added = statistics.median(s["p50_ms"] - d["p50_ms"] for s, d in pairs)
            ratio = statistics.median(s["rps"] / d["rps"] for s, d in pairs)
            print(
                f"concurrency {concurrency}, {name}: added p50 latency {added:.3f} ms, "
                f"throughput {name}/direct {ratio:.2f} (medians of paired runs)"
            )


if __name__ == "__main__":
    main()
