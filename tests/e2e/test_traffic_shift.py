"""UpdateEndpoint with a blue/green DeploymentConfig: canary and linear traffic shifting in
steps with no failed call, and rollbacks that leave the old fleet serving.

The old config serves variant ``Blue`` and the new one ``Green`` (the same model): the
``x-Amzn-Invoked-Production-Variant`` of each answer says which fleet served it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from sagehost.testing.server import RunningServer
from tests.e2e.conftest import MODELS, unique


class Caller(threading.Thread):
    """Invokes the endpoint without pause, recording when each answer came and from where."""

    def __init__(self, server: RunningServer, name: str) -> None:
        super().__init__(daemon=True)
        self.rt = server.client("sagemaker-runtime")
        self.name = name
        self.answers: list[tuple[float, str]] = []
        self.failures: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        count = 0
        while not self.stopping.is_set():
            body = f"call-{count}".encode()
            count += 1
            try:
                reply = self.rt.invoke_endpoint(
                    EndpointName=self.name, Body=body, ContentType="text/plain"
                )
                assert reply["Body"].read() == body
            except Exception as error:  # every failure counts; the test asserts there is none
                self.failures.append(repr(error))
                continue
            self.answers.append((time.monotonic(), reply["InvokedProductionVariant"]))

    def wait_for(self, variant: str, in_a_row: int = 1, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            tail = [v for _, v in self.answers[-in_a_row:]]
            if len(tail) == in_a_row and set(tail) == {variant}:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"never {in_a_row} answers from {variant} in a row")
            time.sleep(0.01)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


def create_config(
    sm: Any, name: str, variant: str, model_dir: Path, env: dict[str, str] | None = None
) -> None:
    container: dict[str, Any] = {"Image": "sagehost/python", "ModelDataUrl": model_dir.as_uri()}
    if env:
        container["Environment"] = env
    sm.create_model(ModelName=name, PrimaryContainer=container)
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[{"VariantName": variant, "ModelName": name, "InitialInstanceCount": 1}],
    )


def blue_endpoint(sm: Any, name: str) -> None:
    create_config(sm, name, "Blue", MODELS / "behave")
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"


def blue_green(kind: str, wait_s: int, size: tuple[str, int], **policy: Any) -> dict[str, Any]:
    """A DeploymentConfig that shifts traffic to the new fleet by ``kind`` (CANARY or LINEAR)
    steps of ``size`` (its Type and Value), ``wait_s`` seconds apart."""
    step = "CanarySize" if kind == "CANARY" else "LinearStepSize"
    routing = {
        "Type": kind,
        "WaitIntervalInSeconds": wait_s,
        step: {"Type": size[0], "Value": size[1]},
    }
    return {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing, **policy}}


def update_to_green(sm: Any, name: str, deployment: dict[str, Any]) -> None:
    sm.update_endpoint(
        EndpointName=name, EndpointConfigName=f"{name}-green", DeploymentConfig=deployment
    )


def shift_window(answers: list[tuple[float, str]]) -> list[tuple[float, str]]:
    """The answers from the first Green to the last Blue: the shift itself. Before it every
    answer is Blue, after it every answer is Green."""
    first_green = next(i for i, (_, v) in enumerate(answers) if v == "Green")
    last_blue = max(i for i, (_, v) in enumerate(answers) if v == "Blue")
    assert {v for _, v in answers[:first_green]} == {"Blue"}
    assert {v for _, v in answers[last_blue + 1 :]} == {"Green"}
    return answers[first_green : last_blue + 1]


def green_share(answers: list[tuple[float, str]]) -> float:
    return sum(1 for _, v in answers if v == "Green") / len(answers)


def update_while_calling(
    server: RunningServer,
    sm: Any,
    name: str,
    deployment: dict[str, Any],
    *,
    model: str = "behave",
    warm: int = 20,
    serving: str = "Green",
) -> tuple[Caller, dict[str, Any]]:
    """Update to a Green config of ``model`` while a Caller invokes without pause, after
    ``warm`` Blue answers in a row; returns once ``serving`` answers 20 in a row."""
    create_config(sm, f"{name}-green", "Green", MODELS / model)
    caller = Caller(server, name)
    caller.start()
    try:
        caller.wait_for("Blue", in_a_row=warm)
        update_to_green(sm, name, deployment)
        described = sm.describe_endpoint(EndpointName=name)  # waits for the update to settle
        caller.wait_for(serving, in_a_row=20)
    finally:
        caller.stop()
    assert caller.failures == []
    return caller, described


def test_canary_shift(server: RunningServer, sm: Any) -> None:
    name = unique("canary")
    blue_endpoint(sm, name)
    deployment = blue_green("CANARY", 2, ("CAPACITY_PERCENT", 25), TerminationWaitInSeconds=1)
    caller, described = update_while_calling(server, sm, name, deployment)

    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == f"{name}-green"
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["Green"]
    assert described["LastDeploymentConfig"] == deployment
    assert "FailureReason" not in described
    window = shift_window(caller.answers)
    duration = window[-1][0] - window[0][0]
    # The canary step lasts WaitIntervalInSeconds (2 s), at 25 % of the traffic.
    assert 1.5 <= duration <= 3.0, duration
    assert len(window) >= 40, len(window)
    assert 0.12 <= green_share(window) <= 0.4, green_share(window)
    sm.delete_endpoint(EndpointName=name)


def test_linear_shift_rises_in_steps(server: RunningServer, sm: Any) -> None:
    name = unique("linear")
    blue_endpoint(sm, name)
    deployment = blue_green("LINEAR", 1, ("CAPACITY_PERCENT", 25))
    caller, described = update_while_calling(server, sm, name, deployment)

    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == f"{name}-green"
    window = shift_window(caller.answers)
    start, end = window[0][0], window[-1][0]
    # Three steps of 1 s at 25, 50 and 75 %, then everything on Green.
    assert 2.5 <= end - start <= 4.0, end - start
    third = (end - start) / 3
    shares = [
        green_share([a for a in window if start + k * third <= a[0] <= start + (k + 1) * third])
        for k in range(3)
    ]
    assert shares[0] < shares[1] < shares[2], shares
    for share, expected in zip(shares, (0.25, 0.5, 0.75), strict=True):
        assert abs(share - expected) <= 0.15, shares
    sm.delete_endpoint(EndpointName=name)


def test_a_new_fleet_that_fails_to_start_leaves_the_old_one_serving(
    server: RunningServer, sm: Any, rt: Any
) -> None:
    name = unique("badupdate")
    blue_endpoint(sm, name)
    deployment = blue_green("LINEAR", 1, ("CAPACITY_PERCENT", 50))
    caller, described = update_while_calling(
        server, sm, name, deployment, model="broken", warm=5, serving="Blue"
    )
    assert {v for _, v in caller.answers} == {"Blue"}
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == name
    assert described["FailureReason"]
    assert "LastDeploymentConfig" not in described
    sm.delete_endpoint(EndpointName=name)


def test_a_new_fleet_that_falls_over_during_the_canary_is_rolled_back(
    server: RunningServer, sm: Any, rt: Any, tmp_path: Path
) -> None:
    name = unique("rollback")
    blue_endpoint(sm, name)
    create_config(
        sm, f"{name}-green", "Green", MODELS / "slow_restart", {"MARKER": str(tmp_path / "loaded")}
    )
    update_to_green(sm, name, blue_green("CANARY", 3, ("CAPACITY_PERCENT", 50)))
    # Green takes traffic once its fleet is up; then it crashes, and restarts only slowly.
    deadline = time.monotonic() + 30
    while True:
        try:
            reply = rt.invoke_endpoint(EndpointName=name, Body=b"probe", TargetVariant="Green")
            assert reply["InvokedProductionVariant"] == "Green"
            break
        except ClientError as not_yet:  # Green is in no routing table before its fleet is up
            assert not_yet.response["Error"]["Code"] == "ValidationError"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(ClientError):
        rt.invoke_endpoint(EndpointName=name, Body=b"crash", TargetVariant="Green")
    described = sm.describe_endpoint(EndpointName=name)  # waits for the canary to end
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == name
    assert described["FailureReason"] == (
        "Variant Green of the new configuration has no healthy instance; the update was "
        "rolled back; the previous configuration is serving."
    )
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["Blue"]
    for index in range(10):
        reply = rt.invoke_endpoint(EndpointName=name, Body=f"after-{index}".encode())
        assert reply["InvokedProductionVariant"] == "Blue"
        assert reply["Body"].read() == f"after-{index}".encode()
    with pytest.raises(ClientError) as gone:
        rt.invoke_endpoint(EndpointName=name, Body=b"x", TargetVariant="Green")
    assert gone.value.response["Error"]["Code"] == "ValidationError"
    sm.delete_endpoint(EndpointName=name)


def test_a_canary_larger_than_the_new_fleet_is_refused(sm: Any) -> None:
    name = unique("bigcanary")
    blue_endpoint(sm, name)
    create_config(sm, f"{name}-green", "Green", MODELS / "behave")
    with pytest.raises(ClientError) as refused:
        update_to_green(sm, name, blue_green("CANARY", 1, ("INSTANCE_COUNT", 2)))
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert refused.value.response["Error"]["Message"] == (
        "CanarySize of 2 instances is larger than the new fleet's 1 instances."
    )
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
    sm.delete_endpoint(EndpointName=name)
