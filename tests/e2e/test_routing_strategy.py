"""RoutingConfig.RoutingStrategy: least outstanding requests keeps fast calls away from an
instance busy with a slow one; RANDOM does not. Real server, real workers, boto3."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from sagehost.testing.server import RunningServer
from tests.e2e.conftest import deploy, unique

SLOW_S = 0.5
DELAYED_S = 0.15  # a fast call this slow waited behind a slow one
FAST_CALLS = 30


def wait_until(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def fast_call_latencies(server: RunningServer, name: str, marker: Path) -> list[float]:
    """Keep one slow call in flight on the endpoint's two instances, and time fast calls."""
    stop = threading.Event()
    failures: list[BaseException] = []

    def keep_one_slow_call_running() -> None:
        rt = server.client("sagemaker-runtime")
        try:
            while not stop.is_set():
                body = f"sleep:{SLOW_S}@{marker}".encode()
                reply = rt.invoke_endpoint(EndpointName=name, Body=body, ContentType="text/plain")
                assert reply["Body"].read() == body
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    filler = threading.Thread(target=keep_one_slow_call_running, daemon=True)
    filler.start()
    wait_until(marker.exists)  # the first slow call is running
    rt = server.client("sagemaker-runtime")
    latencies = []
    try:
        for index in range(FAST_CALLS):
            body = f"fast-{index}".encode()
            started = time.monotonic()
            reply = rt.invoke_endpoint(EndpointName=name, Body=body, ContentType="text/plain")
            assert reply["Body"].read() == body
            latencies.append(time.monotonic() - started)
    finally:
        stop.set()
        filler.join(timeout=10)
    assert failures == []
    return latencies


def test_least_outstanding_requests_beats_random_on_a_slow_and_fast_mix(
    server: RunningServer, sm: Any, tmp_path: Path
) -> None:
    delayed: dict[str, int] = {}
    mean: dict[str, float] = {}
    for strategy in ("LEAST_OUTSTANDING_REQUESTS", "RANDOM"):
        name = unique(strategy.lower().replace("_", "-")[:20])
        routing = {"RoutingStrategy": strategy}
        described = deploy(
            sm,
            name,
            variants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InitialInstanceCount": 2,
                    "RoutingConfig": routing,
                }
            ],
        )
        assert described["ProductionVariants"][0]["RoutingConfig"] == routing
        assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 2
        try:
            latencies = fast_call_latencies(server, name, tmp_path / f"{strategy}.started")
        finally:
            sm.delete_endpoint(EndpointName=name)
        delayed[strategy] = sum(1 for t in latencies if t > DELAYED_S)
        mean[strategy] = sum(latencies) / len(latencies)

    # Least outstanding requests always has an idle instance for a fast call (one slow call
    # in flight, two instances); allow two hiccups from a busy test machine.
    assert delayed["LEAST_OUTSTANDING_REQUESTS"] <= 2, delayed
    # RANDOM sends half the fast calls to the busy instance, and most of those wait longer
    # than DELAYED_S: 3 or fewer of 30 delayed has a probability below 1e-3.
    assert delayed["RANDOM"] >= 4, delayed
    assert mean["LEAST_OUTSTANDING_REQUESTS"] < mean["RANDOM"], mean
