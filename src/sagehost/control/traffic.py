"""The schedule of a blue/green update: how much traffic the new fleets get, step by step.

Pure: :func:`schedule` turns an UpdateEndpoint ``DeploymentConfig`` and the new fleets' capacity
into :class:`Step` values; ``control/endpoints.py`` walks them and moves the live table.

Shapes read (botocore's ``DeploymentConfig``)::

    BlueGreenUpdatePolicy
        TrafficRoutingConfiguration  Type ALL_AT_ONCE | CANARY | LINEAR, WaitIntervalInSeconds,
                                     CanarySize / LinearStepSize {Type, Value}
        TerminationWaitInSeconds     the old fleets idle this long before they stop
        MaximumExecutionTimeoutInSeconds
    RollingUpdatePolicy              MaximumBatchSize {Type, Value}, WaitIntervalInSeconds, …
    AutoRollbackConfiguration        Alarms: accepted, never evaluated (no CloudWatch here)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sagehost.core.errors import InvalidRequest

ALL_AT_ONCE = "ALL_AT_ONCE"
CANARY = "CANARY"
LINEAR = "LINEAR"
ROLLING = "ROLLING"  # sagehost: a RollingUpdatePolicy runs as linear traffic steps
INSTANCE_COUNT = "INSTANCE_COUNT"
CAPACITY_PERCENT = "CAPACITY_PERCENT"


@dataclass(frozen=True)
class Step:
    """From the start of this step, ``fraction`` of the untargeted calls go to the new fleets;
    the step lasts ``hold_s`` seconds (its baking period) before the next one starts."""

    fraction: float
    hold_s: float


@dataclass(frozen=True)
class Schedule:
    kind: str
    steps: tuple[Step, ...]
    termination_wait_s: float = 0.0
    # MaximumExecutionTimeoutInSeconds: the whole update (start, shift, baking) must fit.
    timeout_s: float | None = None

    @property
    def shift_s(self) -> float:
        """How long the steps take from the first shift to the end of the last baking period."""
        return sum(step.hold_s for step in self.steps)


IMMEDIATE = Schedule(ALL_AT_ONCE, (Step(1.0, 0.0),))


def schedule(deployment: dict[str, Any] | None, capacity: int) -> Schedule:
    """The steps of ``deployment`` for new fleets of ``capacity`` instances in all.

    No ``DeploymentConfig`` (or one with only AutoRollbackConfiguration) moves all traffic at
    once with no baking, as sagehost always did. Raises ``InvalidRequest`` for a step size that
    does not fit the new fleets.
    """
    deployment = deployment or {}
    capacity = max(capacity, 1)
    blue_green = deployment.get("BlueGreenUpdatePolicy")
    if blue_green is not None:
        routing = blue_green["TrafficRoutingConfiguration"]
        kind = routing["Type"]
        wait = float(routing.get("WaitIntervalInSeconds", 0))
        steps: tuple[Step, ...]
        if kind == CANARY:
            canary = _fraction(_size(routing, "CanarySize", kind), capacity, "CanarySize")
            steps = (Step(canary, wait), Step(1.0, wait)) if canary < 1 else (Step(1.0, wait),)
        elif kind == LINEAR:
            step = _fraction(_size(routing, "LinearStepSize", kind), capacity, "LinearStepSize")
            steps = _linear(step, wait)
        else:
            steps = (Step(1.0, wait),)
        return Schedule(
            kind,
            steps,
            termination_wait_s=float(blue_green.get("TerminationWaitInSeconds", 0)),
            timeout_s=_timeout(blue_green),
        )
    rolling = deployment.get("RollingUpdatePolicy")
    if rolling is not None:
        batch = _fraction(rolling["MaximumBatchSize"], capacity, "MaximumBatchSize")
        wait = float(rolling.get("WaitIntervalInSeconds", 0))
        return Schedule(ROLLING, _linear(batch, wait), timeout_s=_timeout(rolling))
    return IMMEDIATE


def deployment_config(
    params: dict[str, Any], record: dict[str, Any], config: dict[str, Any]
) -> dict[str, Any] | None:
    """The DeploymentConfig an UpdateEndpoint (``params``) of the endpoint ``record`` to
    ``config`` runs with: RetainDeploymentConfig reuses the last one. Checked against the new
    config's capacity, so a step that cannot fit is refused before anything changes."""
    deployment: dict[str, Any] | None = params.get("DeploymentConfig")
    if deployment is None and params.get("RetainDeploymentConfig"):
        deployment = record.get("LastDeploymentConfig")
    schedule(deployment, capacity_of(config["ProductionVariants"]))
    return deployment


def capacity_of(variants: list[dict[str, Any]]) -> int:
    """The instances of the production variants that run a model (the new fleets' capacity)."""
    return sum(int(v.get("InitialInstanceCount") or 1) for v in variants if v.get("ModelName"))


def shadow_sampling(shadow: dict[str, Any], production: list[dict[str, Any]]) -> float:
    """The percentage of calls copied to a shadow variant (sagehost's reading of AWS's rule):
    its InitialVariantWeight relative to the production variants' total weight, at most 100."""
    total = sum(float(v.get("InitialVariantWeight", 1.0)) for v in production)
    weight = float(shadow.get("InitialVariantWeight", 1.0))
    if total <= 0:
        return 100.0 if weight > 0 else 0.0
    return min(100.0, 100.0 * weight / total)


def _size(routing: dict[str, Any], member: str, kind: str) -> dict[str, Any]:
    size = routing.get(member)
    if size is None:
        raise InvalidRequest(f"TrafficRoutingConfiguration of Type {kind} needs a {member}.")
    return dict(size)


def _fraction(size: dict[str, Any], capacity: int, member: str) -> float:
    value = int(size["Value"])
    if size["Type"] == INSTANCE_COUNT:
        if value > capacity:
            raise InvalidRequest(
                f"{member} of {value} instances is larger than the new fleet's "
                f"{capacity} instances."
            )
        return value / capacity
    if value > 100:
        raise InvalidRequest(f"{member} of {value} percent is larger than 100 percent.")
    return value / 100


def _linear(step: float, wait: float) -> tuple[Step, ...]:
    steps: list[Step] = []
    count = 1
    # Rounding keeps 3 * (1/3) from stopping just short of 1 and adding a needless last step.
    while (fraction := round(count * step, 9)) < 1:
        steps.append(Step(fraction, wait))
        count += 1
    steps.append(Step(1.0, wait))
    return tuple(steps)


def _timeout(policy: dict[str, Any]) -> float | None:
    value = policy.get("MaximumExecutionTimeoutInSeconds")
    return None if value is None else float(value)
