"""Benchmark InvokeEndpointAsync: the rate of accepted (durably enqueued) invocations, and the
end-to-end drain rate of an echo model with file:// input and output.

Accept rate: wrk sends one signed InvokeEndpointAsync request over and over (each gets a new
InferenceId) to an endpoint whose single job slot is held by a sleeping job, so the jobs stay
queued and the figure is the front door alone: authentication, validation and a committed
enqueue before the 202. Drain rate: jobs are submitted, then timed from the first submission
until the last output file exists. Needs ``wrk``. Usage::

    python bench/async_jobs.py --runs 3 --seconds 5 --jobs 2000
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
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from common import signed  # bench/common.py; run as a script

from sagehost.testing.server import RunningServer, free_port

HERE = Path(__file__).resolve().parent
BEHAVE = HERE.parent / "tests" / "models" / "behave"


def deploy(server: RunningServer, name: str, model: Path, out: Path, per_instance: int) -> None:
    sm = server.client("sagemaker")
    sm.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "sagehost/python", "ModelDataUrl": model.as_uri()},
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}
        ],
        AsyncInferenceConfig={
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": per_instance},
            "OutputConfig": {"S3OutputPath": out.as_uri()},
        },
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"


def accept_rate(server: RunningServer, tmp: Path, seconds: float, concurrency: int) -> float:
    blocker = tmp / "block.txt"
    blocker.write_bytes(b"sleep:600")
    rt = server.client("sagemaker-runtime")
    rt.invoke_endpoint_async(
        EndpointName="hold", InputLocation=blocker.as_uri(), ContentType="text/plain"
    )
    headers = {
        "X-Amzn-SageMaker-InputLocation": (tmp / "input.json").as_uri(),
        "X-Amzn-SageMaker-Content-Type": "application/json",
    }
    url = f"{server.url}/endpoints/hold/async-invocations"
    script = tmp / "async.lua"
    lines = "\n".join(
        f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}"
        for k, v in signed(url, b"", headers).items()
    )
    script.write_text(f'wrk.method = "POST"\nwrk.body = ""\n{lines}\n')
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(out)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def drain_rate(server: RunningServer, tmp: Path, jobs: int) -> float:
    rt = server.client("sagemaker-runtime")
    source = tmp / "input.json"

    def submit(index: int) -> str:
        reply: dict[str, Any] = rt.invoke_endpoint_async(
            EndpointName="drain",
            InputLocation=source.as_uri(),
            ContentType="application/json",
            InferenceId=f"d{index}",
        )
        return str(reply["OutputLocation"])

    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        outputs = [Path(url.removeprefix("file://")) for url in pool.map(submit, range(jobs))]
    while not all(path.exists() for path in outputs[-50:]) or not all(p.exists() for p in outputs):
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    for path in outputs:
        path.unlink()
    return jobs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument(
        "--gateway-processes", type=int, default=1, help="sagehost serve --gateway-processes"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "input.json").write_bytes(b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}')
        server = RunningServer(
            data_dir=tmp / "data",
            port=free_port(),
            args=["--log-level", "warning", "--gateway-processes", str(args.gateway_processes)],
        )
        server.start()
        try:
            deploy(server, "hold", BEHAVE, tmp / "held", per_instance=1)
            deploy(server, "drain", HERE / "models" / "echo", tmp / "drained", per_instance=8)
            accepted = [
                accept_rate(server, tmp, args.seconds, args.concurrency) for _ in range(args.runs)
            ]
            drained = [drain_rate(server, tmp, args.jobs) for _ in range(args.runs)]
        finally:
            server.stop()
    print(
        f"accepted async invocations/s at concurrency {args.concurrency}: median {statistics.median(accepted):.0f} "
        f"(runs: {', '.join(f'{r:.0f}' for r in accepted)})"
    )
    print(
        f"drain rate, {args.jobs} echo jobs file:// to file://: median {statistics.median(drained):.0f} jobs/s "
        f"(runs: {', '.join(f'{r:.0f}' for r in drained)})"
    )


if __name__ == "__main__":
    main()
