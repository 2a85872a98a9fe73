"""What every control-plane handler shares: the catalog, the clock, and AWS-worded errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sagehost.core.errors import ResourceConflict, ResourceNotFound
from sagehost.core.invocation import Caller
from sagehost.core.ports import Catalog, Clock
from sagehost.core.resources import KIND_WORDS, Kind, arn


@dataclass
class Store:
    """Catalog access in terms of kinds, with the AWS error texts of §10.3."""

    catalog: Catalog
    clock: Clock

    def now(self) -> float:
        # Milliseconds are all the wire carries; rounding here keeps list order and output stable.
        return round(self.clock.time(), 3)

    def get(self, caller: Caller, kind: Kind, name: str) -> dict[str, Any]:
        record = self.catalog.get(caller.account, kind.value, name)
        if record is None:
            raise ResourceNotFound(
                f'Could not find {KIND_WORDS[kind]} "{arn(caller.region, caller.account, kind, name)}".'
            )
        return record

    def find(self, caller: Caller, kind: Kind, name: str) -> dict[str, Any] | None:
        return self.catalog.get(caller.account, kind.value, name)

    def create(self, caller: Caller, kind: Kind, name: str, record: dict[str, Any]) -> None:
        if self.catalog.get(caller.account, kind.value, name) is not None:
            raise ResourceConflict(
                f"Cannot create already existing {KIND_WORDS[kind]} "
                f'"{arn(caller.region, caller.account, kind, name)}".'
            )
        self.catalog.put(caller.account, kind.value, name, record)

    def put(self, account: str, kind: Kind, name: str, record: dict[str, Any]) -> None:
        self.catalog.put(account, kind.value, name, record)

    def delete(self, caller: Caller, kind: Kind, name: str) -> None:
        if not self.catalog.delete(caller.account, kind.value, name):
            self.get(caller, kind, name)  # raises the not-found error

    def scan(self, caller: Caller, kind: Kind) -> list[dict[str, Any]]:
        return self.catalog.scan(caller.account, kind.value)


def public(record: dict[str, Any]) -> dict[str, Any]:
    """The record without sagehost's private keys (those starting with ``_``) and tags."""
    return {k: v for k, v in record.items() if not k.startswith("_") and k != "Tags"}
