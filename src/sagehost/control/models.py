"""CreateModel, DescribeModel, ListModels, DeleteModel."""

from __future__ import annotations

from typing import Any

from sagehost.control.context import Store, public
from sagehost.control.listing import page
from sagehost.control.multi_container import check_containers
from sagehost.core.errors import InvalidRequest
from sagehost.core.invocation import Caller
from sagehost.core.resources import Kind, arn

MAX_CONTAINERS = 15


class Models:
    def __init__(self, store: Store) -> None:
        self._store = store

    def create(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        name = params["ModelName"]
        has_primary = "PrimaryContainer" in params
        containers = params.get("Containers")
        if has_primary == (containers is not None):
            raise InvalidRequest("Exactly one of PrimaryContainer or Containers must be specified.")
        if containers is not None and not 1 <= len(containers) <= MAX_CONTAINERS:
            raise InvalidRequest(f"Containers must hold between 1 and {MAX_CONTAINERS} containers.")
        check_containers(params)
        model_arn = arn(caller.region, caller.account, Kind.MODEL, name)
        record = {
            **{k: v for k, v in params.items() if k != "Tags"},
            "ModelArn": model_arn,
            "CreationTime": self._store.now(),
            "Tags": list(params.get("Tags") or []),
        }
        self._store.create(caller, Kind.MODEL, name, record)
        return {"ModelArn": model_arn}

    def describe(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        return public(self._store.get(caller, Kind.MODEL, params["ModelName"]))

    def delete(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        # Allowed while an endpoint uses it: a live endpoint keeps its own copy (§10.3).
        self._store.delete(caller, Kind.MODEL, params["ModelName"])
        return {}

    def list_models(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        records, token = page(
            self._store.scan(caller, Kind.MODEL),
            params,
            name_key="ModelName",
            sort_keys={
                "Name": lambda r: r["ModelName"].lower(),
                "CreationTime": lambda r: r["CreationTime"],
            },
        )
        out: dict[str, Any] = {
            "Models": [
                {k: r[k] for k in ("ModelName", "ModelArn", "CreationTime")} for r in records
            ]
        }
        if token:
            out["NextToken"] = token
        return out
