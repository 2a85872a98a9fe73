"""DescribeEndpoint's answer: the stored endpoint record rendered with what is live now."""

from __future__ import annotations

from typing import Any

from sagehost.control.context import public
from sagehost.core.endpoint_states import EndpointStatus as S
from sagehost.core.live import LiveEndpoint


def describe_endpoint(record: dict[str, Any], live: LiveEndpoint | None) -> dict[str, Any]:
    """DescribeEndpoint's answer for a stored endpoint record and its live routing entry."""
    out = public(record)
    config = record["_config"]
    ready: dict[str, int] = {}
    if live is not None:
        for variant in (*live.variants, *live.shadows):
            ready[variant.name] = min(
                sum(1 for i in fleet.instances if i.ready) for fleet in variant.fleets()
            )
    out["ProductionVariants"] = [
        _variant_summary(v, record["_models"], ready.get(v["VariantName"]), record)
        for v in config["ProductionVariants"]
    ]
    for key in ("AsyncInferenceConfig", "ExplainerConfig"):
        if key in config:
            out[key] = config[key]
    if "DataCaptureConfig" in config:
        out["DataCaptureConfig"] = _capture_summary(config["DataCaptureConfig"])
    if "ShadowProductionVariants" in config:
        out["ShadowProductionVariants"] = [
            _variant_summary(v, record["_models"], ready.get(v["VariantName"]), record)
            for v in config["ShadowProductionVariants"]
            if v["ModelName"].lower() in record["_models"]
        ]
    pending = record.get("_pending")
    if pending:
        out["PendingDeploymentSummary"] = {
            "EndpointConfigName": pending["EndpointConfigName"],
            "StartTime": pending["StartTime"],
            "ProductionVariants": [
                {
                    "VariantName": v["VariantName"],
                    "DesiredWeight": v.get("InitialVariantWeight", 1.0),
                    "DesiredInstanceCount": v.get("InitialInstanceCount"),
                    "InstanceType": v.get("InstanceType"),
                }
                for v in pending["_config"]["ProductionVariants"]
            ],
        }
    return out


def _capture_summary(capture: dict[str, Any]) -> dict[str, Any]:
    """DescribeEndpoint reports the capture settings in force (DataCaptureConfigSummary)."""
    enabled = bool(capture.get("EnableCapture", True))
    summary: dict[str, Any] = {
        "EnableCapture": enabled,
        "CaptureStatus": "Started" if enabled else "Stopped",
        "CurrentSamplingPercentage": int(capture.get("InitialSamplingPercentage", 0)),
        "DestinationS3Uri": capture.get("DestinationS3Uri", ""),
        "KmsKeyId": capture.get("KmsKeyId", ""),
    }
    return summary


def _variant_summary(
    variant: dict[str, Any],
    models: dict[str, dict[str, Any]],
    ready: int | None,
    record: dict[str, Any],
) -> dict[str, Any]:
    if not variant.get("ModelName"):
        return _component_variant_summary(variant, record)
    model = models.get(variant["ModelName"].lower(), {})
    containers = model.get("Containers") or [model.get("PrimaryContainer") or {}]
    weight = float(variant.get("InitialVariantWeight", 1.0))
    desired = int(variant.get("InitialInstanceCount") or 1)
    summary: dict[str, Any] = {
        "VariantName": variant["VariantName"],
        "DeployedImages": [
            {
                "SpecifiedImage": c.get("Image", ""),
                "ResolvedImage": c.get("Image", ""),
                "ResolutionTime": record["CreationTime"],
            }
            for c in containers
        ],
        "CurrentWeight": weight,
        "DesiredWeight": weight,
        "CurrentInstanceCount": ready if ready is not None else 0,
        "DesiredInstanceCount": desired,
    }
    if "RoutingConfig" in variant:
        summary["RoutingConfig"] = variant["RoutingConfig"]
    return summary


def _component_variant_summary(variant: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """A variant that hosts inference components: it deploys no image, and its instances are
    nominal (each component's copies are its own worker processes), counted once it serves."""
    weight = float(variant.get("InitialVariantWeight", 1.0))
    desired = int(variant.get("InitialInstanceCount") or 1)
    serving = record["EndpointStatus"] in (S.IN_SERVICE, S.UPDATING, S.SYSTEM_UPDATING)
    summary: dict[str, Any] = {
        "VariantName": variant["VariantName"],
        "CurrentWeight": weight,
        "DesiredWeight": weight,
        "CurrentInstanceCount": desired if serving else 0,
        "DesiredInstanceCount": desired,
    }
    for key in ("ManagedInstanceScaling", "RoutingConfig"):
        if key in variant:
            summary[key] = variant[key]
    return summary
