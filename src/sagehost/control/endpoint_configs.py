"""CreateEndpointConfig, DescribeEndpointConfig, ListEndpointConfigs, DeleteEndpointConfig."""

from __future__ import annotations

import re
from typing import Any

from sagehost.control.context import Store, public
from sagehost.control.listing import page
from sagehost.core.errors import InvalidRequest
from sagehost.core.invocation import Caller
from sagehost.core.resources import Kind, arn

# sagehost extension: a tag on the endpoint config sets the invocation deadline of endpoints
# deployed from it (AWS fixes it at 60 s and has no field for it).
TIMEOUT_TAG = "sagehost:invocation-timeout-seconds"
MAX_TIMEOUT_S = 3600
# sagehost extension: the Accept header sent to every container of a Serial inference pipeline
# but the last (§7.4 leaves it open): "client" (the default) forwards the caller's Accept,
# "none" sends none, and a media type is sent as is.
PIPELINE_ACCEPT_TAG = "sagehost:pipeline-accept"
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+")


class EndpointConfigs:
    def __init__(self, store: Store) -> None:
        self._store = store

    def create(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        name = params["EndpointConfigName"]
        variants = [dict(v) for v in params["ProductionVariants"]]
        seen: set[str] = set()
        for variant in variants:
            vname = variant["VariantName"]
            if vname.lower() in seen:
                raise InvalidRequest(f"Duplicate VariantName {vname} in ProductionVariants.")
            seen.add(vname.lower())
            variant.setdefault("InitialVariantWeight", 1.0)
            # Variants without a model make an endpoint for inference components (§7.5); one
            # endpoint cannot be both.
            if ("ModelName" in variant) != ("ModelName" in variants[0]):
                raise InvalidRequest(
                    "Either every production variant names a ModelName or none does "
                    "(an endpoint that hosts inference components)."
                )
            if "ModelName" in variant:
                self._store.get(caller, Kind.MODEL, variant["ModelName"])
            if "InitialInstanceCount" not in variant and "ServerlessConfig" not in variant:
                raise InvalidRequest(f"Variant {vname} needs an InitialInstanceCount.")
        invocation_timeout(params.get("Tags") or [])  # validate early
        pipeline_accept(params.get("Tags") or [])
        multi_model_budgets(params.get("Tags") or [])
        capture = params.get("DataCaptureConfig")
        # The API's pattern also admits https://, which sagehost cannot write to: refuse it
        # here rather than fail every capture flush later.
        if capture is not None and not capture["DestinationS3Uri"].startswith(("s3://", "file://")):
            raise InvalidRequest(
                f"DataCaptureConfig.DestinationS3Uri {capture['DestinationS3Uri']} is not "
                "supported: use an s3:// or file:// location."
            )
        config_arn = arn(caller.region, caller.account, Kind.ENDPOINT_CONFIG, name)
        record = {
            **{k: v for k, v in params.items() if k != "Tags"},
            "ProductionVariants": variants,
            "EndpointConfigArn": config_arn,
            "CreationTime": self._store.now(),
            "Tags": list(params.get("Tags") or []),
        }
        self._store.create(caller, Kind.ENDPOINT_CONFIG, name, record)
        return {"EndpointConfigArn": config_arn}

    def describe(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return public(self._store.get(caller, Kind.ENDPOINT_CONFIG, params["EndpointConfigName"]))

    def delete(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        self._store.delete(caller, Kind.ENDPOINT_CONFIG, params["EndpointConfigName"])
        return {}

    def list_configs(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        records, token = page(
            self._store.scan(caller, Kind.ENDPOINT_CONFIG),
            params,
            name_key="EndpointConfigName",
            sort_keys={
                "Name": lambda r: r["EndpointConfigName"].lower(),
                "CreationTime": lambda r: r["CreationTime"],
            },
        )
        out: dict[str, Any] = {
            "EndpointConfigs": [
                {k: r[k] for k in ("EndpointConfigName", "EndpointConfigArn", "CreationTime")}
                for r in records
            ]
        }
        if token:
            out["NextToken"] = token
        return out


def invocation_timeout(tags: list[dict[str, Any]], default: float = 60.0) -> float:
    for tag in tags:
        if tag.get("Key") == TIMEOUT_TAG:
            try:
                value = float(tag.get("Value", ""))
            except ValueError:
                value = -1.0
            if not 0 < value <= MAX_TIMEOUT_S:
                raise InvalidRequest(
                    f"Tag {TIMEOUT_TAG} must be a number of seconds between 1 and {MAX_TIMEOUT_S}."
                )
            return value
    return default


def pipeline_accept(tags: list[dict[str, Any]]) -> str | None:
    """The ``sagehost:pipeline-accept`` tag as ``LiveEndpoint.pipeline_accept``: None forwards
    the caller's Accept, "" sends none, anything else is the media type to send."""
    for tag in tags:
        if tag.get("Key") == PIPELINE_ACCEPT_TAG:
            value = str(tag.get("Value", "")).strip()
            if value == "client":
                return None
            if value == "none":
                return ""
            if not _MEDIA_TYPE.fullmatch(value):
                raise InvalidRequest(
                    f'Tag {PIPELINE_ACCEPT_TAG} must be "client", "none" or a media type '
                    f'such as "text/csv", not "{value}".'
                )
            return value
    return None


# sagehost extension: budgets of the multi-model variants of endpoints deployed from a config,
# in MiB, overriding the `sagehost serve --mme-memory-mb/--mme-disk-mb` defaults.
MME_MEMORY_TAG = "sagehost:mme-memory-mb"
MME_DISK_TAG = "sagehost:mme-disk-mb"
MAX_BUDGET_MB = 1 << 30


def multi_model_budgets(tags: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """The ``sagehost:mme-memory-mb`` and ``sagehost:mme-disk-mb`` tags (None where unset)."""
    found: dict[str, float] = {}
    for tag in tags:
        key = tag.get("Key")
        if key in (MME_MEMORY_TAG, MME_DISK_TAG):
            try:
                value = float(tag.get("Value", ""))
            except ValueError:
                value = -1.0
            if not 0 < value <= MAX_BUDGET_MB:
                raise InvalidRequest(f"Tag {key} must be a number of MiB above 0.")
            found[str(key)] = value
    return found.get(MME_MEMORY_TAG), found.get(MME_DISK_TAG)
