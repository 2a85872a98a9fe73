"""An inference component's request fields and records (§7.5, §10.2): which endpoint variant
hosts it, which model its copies run, and the shapes Describe and List answer with."""

from __future__ import annotations

from typing import Any

from sagehost.control.context import Store
from sagehost.control.deployer import model_containers
from sagehost.core.endpoint_states import EndpointStatus
from sagehost.core.errors import InvalidRequest
from sagehost.core.invocation import Caller
from sagehost.core.resources import Kind

SPEC_KEYS = ("Specification", "Specifications")
MAX_SPECIFICATIONS = 5
_DESCRIBED = (
    "InferenceComponentName",
    "InferenceComponentArn",
    "EndpointName",
    "EndpointArn",
    "VariantName",
    "FailureReason",
    "CreationTime",
    "LastModifiedTime",
    "InferenceComponentStatus",
    "LastDeploymentConfig",
)
_LISTED = (
    "CreationTime",
    "InferenceComponentArn",
    "InferenceComponentName",
    "EndpointArn",
    "EndpointName",
    "VariantName",
    "InferenceComponentStatus",
    "LastModifiedTime",
)


def hosts_components(config: dict[str, Any]) -> bool:
    """An endpoint config whose production variants name no model is for inference components."""
    return not any(v.get("ModelName") for v in config["ProductionVariants"])


def specifications(params: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The request's specifications (``Specification``, or ``Specifications``, one per
    instance type), or None when it has neither."""
    single, several = params.get("Specification"), params.get("Specifications")
    if single is not None and several is not None:
        raise InvalidRequest("Specify either Specification or Specifications, not both.")
    if several is not None and not 1 <= len(several) <= MAX_SPECIFICATIONS:
        raise InvalidRequest(
            f"Specifications must hold between 1 and {MAX_SPECIFICATIONS} specifications."
        )
    specs: list[dict[str, Any]] | None = [single] if single is not None else several
    for spec in specs or ():
        needs = spec.get("ComputeResourceRequirements") or {}
        low, high = needs.get("MinMemoryRequiredInMb"), needs.get("MaxMemoryRequiredInMb")
        if low is not None and high is not None and high < low:
            raise InvalidRequest(
                f"MaxMemoryRequiredInMb ({high}) must not be less than "
                f"MinMemoryRequiredInMb ({low})."
            )
    return specs


def spec_fields(params: dict[str, Any]) -> dict[str, Any]:
    """The specification members of a request, to store as they were given."""
    return {key: params[key] for key in SPEC_KEYS if key in params}


def first_spec(record: dict[str, Any]) -> dict[str, Any]:
    """The specification the copies run: sagehost has no instance types to choose from, so of
    several it runs the first."""
    if "Specifications" in record:
        spec: dict[str, Any] = record["Specifications"][0]
        return spec
    single: dict[str, Any] = record["Specification"]
    return single


def copy_count(record: dict[str, Any]) -> int:
    return int(record["RuntimeConfig"]["CopyCount"])


def host_variant(endpoint: dict[str, Any], name: str | None) -> dict[str, Any]:
    """The production variant of ``endpoint`` (its record) that hosts a new component."""
    endpoint_arn = endpoint["EndpointArn"]
    status = endpoint["EndpointStatus"]
    if status in (EndpointStatus.DELETING, EndpointStatus.FAILED):
        raise InvalidRequest(
            f'Cannot create an inference component on endpoint "{endpoint_arn}" while its '
            f"status is {status}."
        )
    variants: list[dict[str, Any]] = endpoint["_config"]["ProductionVariants"]
    if not hosts_components(endpoint["_config"]):
        raise InvalidRequest(
            f'Endpoint "{endpoint_arn}" serves models from its production variants and cannot '
            "host inference components; deploy it from an endpoint configuration whose "
            "variants name no ModelName."
        )
    if name is None:
        if len(variants) == 1:
            return variants[0]
        raise InvalidRequest(
            f'Endpoint "{endpoint_arn}" has {len(variants)} production variants; '
            "name one with VariantName."
        )
    for variant in variants:
        if variant["VariantName"] == name:
            return variant
    raise InvalidRequest(
        f'The variant name {name} is not present in the endpoint "{endpoint_arn}".'
    )


def runnable_model(
    store: Store, caller: Caller, name: str, spec: dict[str, Any]
) -> dict[str, Any] | None:
    """What the copies of component ``name`` run, as a model record with one
    ``PrimaryContainer``: the model named by ``ModelName``, with the fields of an inline
    ``Container`` (Image, ArtifactUrl, Environment) over its own; or the inline container
    alone. None for an adapter (``BaseInferenceComponentName``), which runs nothing itself."""
    container = spec.get("Container") or {}
    model_name = spec.get("ModelName")
    if model_name:
        model = store.get(caller, Kind.MODEL, model_name)
        containers = model_containers(model)
        if len(containers) != 1:
            raise InvalidRequest(
                f"Model {model['ModelName']} has {len(containers)} containers; an inference "
                "component runs a model with one container."
            )
        if containers[0].get("Mode") == "MultiModel":
            raise InvalidRequest(
                f"Model {model['ModelName']} is a multi-model container; an inference "
                "component runs a single model."
            )
        primary = dict(containers[0])
    elif container.get("Image"):
        primary = {}
    elif spec.get("BaseInferenceComponentName"):
        store.get(caller, Kind.INFERENCE_COMPONENT, spec["BaseInferenceComponentName"])
        return None
    else:
        raise InvalidRequest(
            f"The specification of inference component {name} must name a ModelName "
            "or a Container with an Image."
        )
    if container.get("Image"):
        primary["Image"] = container["Image"]
    if container.get("ArtifactUrl"):
        primary["ModelDataUrl"] = container["ArtifactUrl"]
        primary.pop("ModelDataSource", None)
    if container.get("Environment"):
        primary["Environment"] = {**(primary.get("Environment") or {}), **container["Environment"]}
    return {"ModelName": model_name or name, "PrimaryContainer": primary}


def describe_record(record: dict[str, Any], ready: int) -> dict[str, Any]:
    """DescribeInferenceComponent's answer; ``ready`` copies pass their health check."""
    out = {key: record[key] for key in _DESCRIBED if key in record}
    deployed_at = record.get("_deployed_at", record["CreationTime"])
    if "Specifications" in record:
        out["Specifications"] = [_spec_summary(s, deployed_at) for s in record["Specifications"]]
    else:
        out["Specification"] = _spec_summary(record["Specification"], deployed_at)
    pending = record.get("_pending") or {}
    out["RuntimeConfig"] = {
        "DesiredCopyCount": pending.get("CopyCount", copy_count(record)),
        "CurrentCopyCount": ready,
    }
    return out


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """One entry of ListInferenceComponents."""
    return {key: record[key] for key in _LISTED}


def _spec_summary(spec: dict[str, Any], deployed_at: float) -> dict[str, Any]:
    out = {key: value for key, value in spec.items() if key != "Container"}
    container = spec.get("Container")
    if container is not None:
        shown = {key: container[key] for key in ("ArtifactUrl", "Environment") if key in container}
        if "Image" in container:
            shown["DeployedImage"] = {
                "SpecifiedImage": container["Image"],
                "ResolvedImage": container["Image"],
                "ResolutionTime": deployed_at,
            }
        out["Container"] = shown
    return out
