"""CreateEndpointConfig, DescribeEndpointConfig, ListEndpointConfigs, DeleteEndpointConfig."""

from __future__ import annotations

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
            if "ModelName" not in variant:
                raise InvalidRequest(
                    f"Variant {vname} has no ModelName; inference-component endpoints are not supported yet."
                )
            self._store.get(caller, Kind.MODEL, variant["ModelName"])
            if "InitialInstanceCount" not in variant and "ServerlessConfig" not in variant:
                raise InvalidRequest(f"Variant {vname} needs an InitialInstanceCount.")
        invocation_timeout(params.get("Tags") or [])  # validate early
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
