"""Filtering, sorting and NextToken pagination shared by every List* operation."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from sagehost.core.errors import InvalidRequest

DEFAULT_MAX_RESULTS = 10


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode()


def decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = value["o"]
    except (ValueError, KeyError, TypeError):
        raise InvalidRequest("The NextToken provided is invalid.") from None
    if not isinstance(offset, int) or offset < 0:
        raise InvalidRequest("The NextToken provided is invalid.")
    return offset


def page(
    records: list[dict[str, Any]],
    params: dict[str, Any],
    *,
    name_key: str,
    sort_keys: dict[str, Callable[[dict[str, Any]], Any]],
    extra_filter: Callable[[dict[str, Any]], bool] | None = None,
    default_max: int = DEFAULT_MAX_RESULTS,
) -> tuple[list[dict[str, Any]], str | None]:
    """Apply the common List* parameters; returns the page and the next token (or None)."""
    contains = params.get("NameContains")
    if contains:
        needle = str(contains).lower()
        records = [r for r in records if needle in str(r[name_key]).lower()]
    records = [
        r
        for r in records
        if _in_time_window(r, params) and (extra_filter is None or extra_filter(r))
    ]
    sort_by = params.get("SortBy") or "CreationTime"
    key = sort_keys.get(sort_by, sort_keys["CreationTime"])
    descending = (params.get("SortOrder") or "Descending") == "Descending"
    # Ties broken by name so that pages never overlap or skip a record.
    records.sort(key=lambda r: (key(r), str(r[name_key]).lower()), reverse=descending)
    start = decode_token(params.get("NextToken"))
    size = int(params.get("MaxResults") or default_max)
    chunk = records[start : start + size]
    more = start + size < len(records)
    return chunk, encode_token(start + size) if more else None


def _in_time_window(record: dict[str, Any], params: dict[str, Any]) -> bool:
    for field, key, before in (
        ("CreationTimeBefore", "CreationTime", True),
        ("CreationTimeAfter", "CreationTime", False),
        ("LastModifiedTimeBefore", "LastModifiedTime", True),
        ("LastModifiedTimeAfter", "LastModifiedTime", False),
    ):
        bound = params.get(field)
        if bound is None:
            continue
        value = float(record.get(key, record["CreationTime"]))
        if (value >= float(bound)) if before else (value <= float(bound)):
            return False
    return True
