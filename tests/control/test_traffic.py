"""The blue/green schedule of a DeploymentConfig, and the shadow sampling rule: pure values."""

from __future__ import annotations

from typing import Any

import pytest

from sagehost.control.traffic import (
    ALL_AT_ONCE,
    CANARY,
    IMMEDIATE,
    LINEAR,
    ROLLING,
    Schedule,
    Step,
    capacity_of,
    schedule,
    shadow_sampling,
)
from sagehost.core.errors import InvalidRequest


def blue_green(routing: dict[str, Any], **policy: Any) -> dict[str, Any]:
    return {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing, **policy}}


def test_no_deployment_config_moves_everything_at_once_without_baking() -> None:
    assert schedule(None, 3) == IMMEDIATE
    assert schedule({}, 3) == Schedule(ALL_AT_ONCE, (Step(1.0, 0.0),))
    # Alarms alone cannot be evaluated: the update is still immediate.
    assert schedule({"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "a"}]}}, 1) == IMMEDIATE


def test_all_at_once_bakes_for_the_wait_interval_and_keeps_the_termination_wait() -> None:
    plan = schedule(
        blue_green(
            {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 30},
            TerminationWaitInSeconds=120,
            MaximumExecutionTimeoutInSeconds=900,
        ),
        2,
    )
    assert plan == Schedule(
        ALL_AT_ONCE, (Step(1.0, 30.0),), termination_wait_s=120.0, timeout_s=900.0
    )
    assert plan.shift_s == 30.0


def test_canary_by_capacity_percent() -> None:
    plan = schedule(
        blue_green(
            {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 5,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 25},
            }
        ),
        4,
    )
    assert plan.kind == CANARY
    assert plan.steps == (Step(0.25, 5.0), Step(1.0, 5.0))
    assert plan.termination_wait_s == 0.0
    assert plan.timeout_s is None
    assert plan.shift_s == 10.0


def test_canary_by_instance_count_is_a_share_of_the_new_capacity() -> None:
    routing = {
        "Type": "CANARY",
        "WaitIntervalInSeconds": 1,
        "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
    }
    assert schedule(blue_green(routing), 4).steps == (Step(0.25, 1.0), Step(1.0, 1.0))
    # A canary as large as the whole new fleet is one step.
    assert schedule(blue_green(routing), 1).steps == (Step(1.0, 1.0),)


def test_linear_steps_end_at_the_whole_fleet() -> None:
    def linear(size: dict[str, Any], capacity: int) -> tuple[Step, ...]:
        routing = {"Type": "LINEAR", "WaitIntervalInSeconds": 2, "LinearStepSize": size}
        plan = schedule(blue_green(routing), capacity)
        assert plan.kind == LINEAR
        return plan.steps

    assert linear({"Type": "CAPACITY_PERCENT", "Value": 25}, 8) == (
        Step(0.25, 2.0),
        Step(0.5, 2.0),
        Step(0.75, 2.0),
        Step(1.0, 2.0),
    )
    assert linear({"Type": "CAPACITY_PERCENT", "Value": 40}, 8) == (
        Step(0.4, 2.0),
        Step(0.8, 2.0),
        Step(1.0, 2.0),
    )
    # One instance of three at a time: 1/3, 2/3, then all (no extra step from rounding).
    thirds = linear({"Type": "INSTANCE_COUNT", "Value": 1}, 3)
    assert [round(s.fraction, 6) for s in thirds] == [0.333333, 0.666667, 1.0]


def test_rolling_update_policy_runs_as_linear_batches() -> None:
    plan = schedule(
        {
            "RollingUpdatePolicy": {
                "MaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 2},
                "WaitIntervalInSeconds": 3,
                "MaximumExecutionTimeoutInSeconds": 600,
            }
        },
        4,
    )
    assert plan == Schedule(ROLLING, (Step(0.5, 3.0), Step(1.0, 3.0)), timeout_s=600.0)


@pytest.mark.parametrize(
    ("routing", "capacity", "message"),
    [
        (
            {"Type": "CANARY", "WaitIntervalInSeconds": 1},
            2,
            "TrafficRoutingConfiguration of Type CANARY needs a CanarySize.",
        ),
        (
            {"Type": "LINEAR", "WaitIntervalInSeconds": 1},
            2,
            "TrafficRoutingConfiguration of Type LINEAR needs a LinearStepSize.",
        ),
        (
            {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 1,
                "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 3},
            },
            2,
            "CanarySize of 3 instances is larger than the new fleet's 2 instances.",
        ),
        (
            {
                "Type": "LINEAR",
                "WaitIntervalInSeconds": 1,
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 150},
            },
            2,
            "LinearStepSize of 150 percent is larger than 100 percent.",
        ),
    ],
)
def test_sizes_that_do_not_fit_are_refused(
    routing: dict[str, Any], capacity: int, message: str
) -> None:
    with pytest.raises(InvalidRequest) as error:
        schedule(blue_green(routing), capacity)
    assert error.value.message == message


def test_capacity_counts_only_variants_that_run_a_model() -> None:
    variants: list[dict[str, Any]] = [
        {"VariantName": "a", "ModelName": "m", "InitialInstanceCount": 3},
        {"VariantName": "b", "ModelName": "m"},
        {"VariantName": "c", "InitialInstanceCount": 5},  # an inference-component variant
    ]
    assert capacity_of(variants) == 4
    # An empty capacity still gives a schedule (a percentage of nothing is everything).
    nothing: list[dict[str, Any]] = []
    assert schedule(None, capacity_of(nothing)) == IMMEDIATE


def test_shadow_sampling_is_the_shadow_weight_relative_to_production() -> None:
    production = [{"VariantName": "p", "InitialVariantWeight": 1.0}]
    assert shadow_sampling({"VariantName": "s"}, production) == 100.0
    assert shadow_sampling({"VariantName": "s", "InitialVariantWeight": 0.5}, production) == 50.0
    assert shadow_sampling({"VariantName": "s", "InitialVariantWeight": 4}, production) == 100.0
    two = [{"InitialVariantWeight": 1.0}, {"InitialVariantWeight": 3.0}]
    assert shadow_sampling({"InitialVariantWeight": 1.0}, two) == 25.0
    assert shadow_sampling({"InitialVariantWeight": 0.0}, production) == 0.0
    assert shadow_sampling({"InitialVariantWeight": 1.0}, [{"InitialVariantWeight": 0}]) == 100.0
