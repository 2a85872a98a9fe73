"""ShadowProductionVariants: a sampled copy of the traffic reaches the shadow, its answers are
discarded and recorded, and the caller's answer and latency never depend on it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sagehost.testing.server import RunningServer
from tests.e2e.async_helpers import deploy_async
from tests.e2e.conftest import MODELS, unique
from tests.e2e.signed import own_call, signed_call


def behave_model(sm: Any, name: str) -> None:
    sm.create_model(
        ModelName=name,
        PrimaryContainer={"Image": "sagehost/python", "ModelDataUrl": (MODELS / "behave").as_uri()},
    )


def endpoint_of(
    sm: Any, name: str, variant: str, shadows: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """An endpoint of one instance of model ``name`` as ``variant``, and ``shadows``;
    returns DescribeEndpoint."""
    config: dict[str, Any] = {
        "EndpointConfigName": name,
        "ProductionVariants": [
            {"VariantName": variant, "ModelName": name, "InitialInstanceCount": 1}
        ],
    }
    if shadows is not None:
        config["ShadowProductionVariants"] = shadows
    sm.create_endpoint_config(**config)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    described: dict[str, Any] = sm.describe_endpoint(EndpointName=name)
    return described


def deploy_with_shadow(
    sm: Any,
    name: str,
    shadow_env: dict[str, str],
    *,
    shadow_weight: float = 1.0,
) -> dict[str, Any]:
    behave_model(sm, name)
    sm.create_model(
        ModelName=f"{name}-shadow",
        PrimaryContainer={
            "Image": "sagehost/python",
            "ModelDataUrl": (MODELS / "recorder").as_uri(),
            "Environment": shadow_env,
        },
    )
    shadow = {
        "VariantName": "Shadow",
        "ModelName": f"{name}-shadow",
        "InitialInstanceCount": 1,
        "InitialVariantWeight": shadow_weight,
    }
    described = endpoint_of(sm, name, "Production", [shadow])
    assert described["EndpointStatus"] == "InService", described
    return described


def shadow_traffic(server: RunningServer, name: str) -> dict[str, Any]:
    report = signed_call(server, "SageHost.DescribeShadowTraffic", {"EndpointName": name})
    assert report["EndpointName"] == name
    assert len(report["ShadowVariants"]) == 1
    variant: dict[str, Any] = report["ShadowVariants"][0]
    return variant


def wait_for(server: RunningServer, name: str, done: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        traffic = shadow_traffic(server, name)
        if done(traffic):
            return traffic
        if time.monotonic() > deadline:
            raise AssertionError(f"shadow traffic never settled: {traffic}")
        time.sleep(0.05)


def test_every_call_is_copied_to_the_shadow_and_its_answer_discarded(
    server: RunningServer, sm: Any, rt: Any, tmp_path: Path
) -> None:
    name = unique("shadow")
    record = tmp_path / "shadow-received.txt"
    described = deploy_with_shadow(sm, name, {"RECORD_FILE": str(record), "DELAY": "0.5"})
    assert [v["VariantName"] for v in described["ShadowProductionVariants"]] == ["Shadow"]
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["Production"]

    bodies = [f"call-{i}".encode() for i in range(6)]
    for body in bodies:
        started = time.monotonic()
        reply = rt.invoke_endpoint(EndpointName=name, Body=body, ContentType="text/plain")
        elapsed = time.monotonic() - started
        # The production answer, untouched; the shadow sleeps 0.5 s and answers "recorded:…".
        assert reply["Body"].read() == body
        assert reply["InvokedProductionVariant"] == "Production"
        assert elapsed < 0.45, f"the shadow delayed the caller: {elapsed:.3f} s"

    traffic = wait_for(server, name, lambda t: t["Succeeded"] == len(bodies))
    assert sorted(record.read_bytes().splitlines()) == sorted(bodies)
    assert traffic["VariantName"] == "Shadow"
    assert traffic["SamplingPercentage"] == 100.0
    assert traffic["Sent"] == 6
    assert (traffic["Failed"], traffic["Errors"], traffic["Dropped"]) == (0, 0, 0)
    assert traffic["Unavailable"] == 0
    assert traffic["InFlight"] == 0
    assert traffic["StatusCounts"] == {"200": 6}
    assert traffic["RequestBytes"] == sum(len(b) for b in bodies)
    assert traffic["ResponseBytes"] == sum(len(b"recorded:" + b) for b in bodies)
    assert traffic["LatencyMs"]["Samples"] == 6
    assert traffic["LatencyMs"]["Min"] >= 490  # every copy waited for the shadow's 0.5 s
    assert len(traffic["Recent"]) == 6
    assert {r["Status"] for r in traffic["Recent"]} == {200}
    sm.delete_endpoint(EndpointName=name)


def test_a_failing_shadow_never_changes_the_answer_and_sampling_applies(
    server: RunningServer, sm: Any, rt: Any
) -> None:
    name = unique("shadowfail")
    deploy_with_shadow(sm, name, {"FAIL": "1"}, shadow_weight=0.5)
    calls = 40
    for i in range(calls):
        body = f"payload-{i}".encode()
        reply = rt.invoke_endpoint(EndpointName=name, Body=body, ContentType="text/plain")
        assert reply["Body"].read() == body
        assert reply["ResponseMetadata"]["HTTPStatusCode"] == 200

    traffic = wait_for(server, name, lambda t: t["InFlight"] == 0 and t["Sent"] > 0)
    assert traffic["SamplingPercentage"] == 50.0
    # About half the calls are copied: 40 draws at 50 % stay within 5..35 but for 1e-6.
    assert 5 <= traffic["Sent"] <= 35, traffic
    assert traffic["Failed"] == traffic["Sent"]
    assert traffic["Succeeded"] == 0
    assert traffic["StatusCounts"] == {"500": traffic["Sent"]}
    sm.delete_endpoint(EndpointName=name)


def test_copies_in_flight_are_bounded(server: RunningServer, sm: Any, rt: Any) -> None:
    """A shadow far slower than production: copies beyond the bound (32 in flight) are
    dropped, not queued, and the callers are not slowed."""
    name = unique("shadowslow")
    # 64 handler threads: the copies all sleep at once, so none completes in the first 3 s.
    deploy_with_shadow(sm, name, {"DELAY": "3", "SAGEMAKER_MODEL_SERVER_WORKERS": "64"})
    started = time.monotonic()
    calls = 40
    for i in range(calls):
        rt.invoke_endpoint(EndpointName=name, Body=f"b{i}".encode(), ContentType="text/plain")
    assert time.monotonic() - started < 3  # a copy holding up its call would take 120 s
    during = shadow_traffic(server, name)
    assert during["InFlight"] == 32
    assert during["Dropped"] == calls - 32
    traffic = wait_for(server, name, lambda t: t["InFlight"] == 0)
    assert traffic["Sent"] == 32
    assert traffic["Succeeded"] == 32
    assert traffic["Dropped"] == calls - 32
    assert traffic["Unavailable"] == 0
    sm.delete_endpoint(EndpointName=name)


def test_describe_shadow_traffic_errors(server: RunningServer, sm: Any) -> None:
    status, error = own_call(
        server, "SageHost.DescribeShadowTraffic", {"EndpointName": "no-such-endpoint"}
    )
    assert status == 400
    assert error["__type"] == "ValidationException"
    assert error["Message"] == "Endpoint no-such-endpoint of account 000000000000 not found."
    # An endpoint without shadows reports none.
    name = unique("noshadow")
    behave_model(sm, name)
    assert endpoint_of(sm, name, "A")["EndpointStatus"] == "InService"
    report = signed_call(server, "SageHost.DescribeShadowTraffic", {"EndpointName": name})
    assert report == {"EndpointName": name, "ShadowVariants": []}
    sm.delete_endpoint(EndpointName=name)


def test_a_shadow_whose_model_is_missing_fails_the_deployment(sm: Any) -> None:
    name = unique("shadowmissing")
    behave_model(sm, name)
    shadow = {"VariantName": "S", "ModelName": f"{name}-gone", "InitialInstanceCount": 1}
    described = endpoint_of(sm, name, "A", [shadow])
    assert described["EndpointStatus"] == "Failed"
    assert described["FailureReason"] == f"Could not find model {name}-gone of shadow variant S."
    sm.delete_endpoint(EndpointName=name)


def test_describe_shadow_traffic_reports_endpoints_that_take_no_calls(
    server: RunningServer, sm: Any, tmp_path: Path
) -> None:
    """The report is about the endpoint, so the invocation checks (status, async) do not
    apply."""
    failed = unique("shadowfailed")
    behave_model(sm, failed)
    shadow = {"VariantName": "S", "ModelName": f"{failed}-gone", "InitialInstanceCount": 1}
    assert endpoint_of(sm, failed, "A", [shadow])["EndpointStatus"] == "Failed"
    report = signed_call(server, "SageHost.DescribeShadowTraffic", {"EndpointName": failed})
    assert report == {"EndpointName": failed, "ShadowVariants": []}

    queued = unique("shadowasync")
    deploy_async(server, queued, (tmp_path / "out").as_uri())
    report = signed_call(server, "SageHost.DescribeShadowTraffic", {"EndpointName": queued})
    assert report == {"EndpointName": queued, "ShadowVariants": []}

    for name in (failed, queued):
        sm.delete_endpoint(EndpointName=name)
