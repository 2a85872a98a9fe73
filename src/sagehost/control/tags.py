"""AddTags, ListTags, DeleteTags on models, endpoint configs and endpoints."""

from __future__ import annotations

from typing import Any

from sagehost.control.context import Store
from sagehost.control.listing import decode_token, encode_token
from sagehost.core.errors import InvalidRequest, ResourceNotFound
from sagehost.core.invocation import Caller
from sagehost.core.resources import Kind, parse_arn

MAX_TAGS = 50


class Tags:
    def __init__(self, store: Store) -> None:
        self._store = store

    def _locate(self, caller: Caller, resource_arn: str) -> tuple[Kind, dict[str, Any]]:
        parsed = parse_arn(resource_arn)
        if parsed is None:
            raise InvalidRequest(f"Invalid ResourceArn {resource_arn}.")
        _, account, kind, name = parsed
        record = self._store.find(caller, kind, name) if account == caller.account else None
        if record is None:
            # Another account's ARN reads exactly like a missing one: nothing leaks across accounts.
            raise ResourceNotFound(f"Resource {resource_arn} does not exist.")
        return kind, record

    def add(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        kind, record = self._locate(caller, params["ResourceArn"])
        tags = {t["Key"]: t for t in record.get("Tags", [])}
        for tag in params["Tags"]:
            tags[tag["Key"]] = {"Key": tag["Key"], "Value": tag.get("Value", "")}
        if len(tags) > MAX_TAGS:
            raise InvalidRequest(f"A resource can have at most {MAX_TAGS} tags.")
        record["Tags"] = list(tags.values())
        self._store.put(caller.account, kind, _name(kind, record), record)
        return {"Tags": params["Tags"]}

    def list_tags(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        _, record = self._locate(caller, params["ResourceArn"])
        tags = record.get("Tags", [])
        start = decode_token(params.get("NextToken"))
        size = int(params.get("MaxResults") or MAX_TAGS)
        out: dict[str, Any] = {"Tags": tags[start : start + size]}
        if start + size < len(tags):
            out["NextToken"] = encode_token(start + size)
        return out

    def delete(self, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        kind, record = self._locate(caller, params["ResourceArn"])
        drop = set(params["TagKeys"])
        record["Tags"] = [t for t in record.get("Tags", []) if t["Key"] not in drop]
        self._store.put(caller.account, kind, _name(kind, record), record)
        return {}


_NAME_FIELDS = {
    Kind.MODEL: "ModelName",
    Kind.ENDPOINT_CONFIG: "EndpointConfigName",
    Kind.ENDPOINT: "EndpointName",
    Kind.INFERENCE_COMPONENT: "InferenceComponentName",
}


def _name(kind: Kind, record: dict[str, Any]) -> str:
    return str(record[_NAME_FIELDS[kind]])
