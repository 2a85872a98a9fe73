"""The runtime API (rest-json): request headers to members, members to response headers.

Built once from botocore's ``sagemaker-runtime`` service model, so header names and constraints
are never typed by hand. Pure: the caller hands in the operation model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.model import OperationModel, Shape, StructureShape

from sagehost.protocol.shapes import ShapeViolation, compile_pattern, format_violations, validate

SIX_MIB = 6 * 1024 * 1024


class RequestInvalid(Exception):
    """The request breaks the service model; ``message`` is AWS's validation text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class RuntimeOperation:
    name: str
    path_suffix: str  # "invocations", "async-invocations", ...
    input_shape: Shape
    header_members: dict[str, str]  # lower-case wire name -> member name
    uri_member: str
    body_member: str | None
    body_max: int | None
    response_headers: dict[str, str]  # member name -> wire name
    success_status: int
    # Precompiled constraint checks per member: the hot path runs these, and only a failure
    # walks the shape to word AWS's message.
    quick_checks: dict[str, Callable[[object], bool]] = field(default_factory=dict)
    _wire_headers: dict[bytes, str] = field(default_factory=dict)
    _integers: frozenset[str] = frozenset()
    _required: frozenset[str] = frozenset()  # required members other than the body

    @classmethod
    def from_model(cls, op: OperationModel) -> RuntimeOperation:
        shape = op.input_shape
        assert isinstance(shape, StructureShape)
        headers: dict[str, str] = {}
        uri_member = ""
        body_member = None
        body_max = None
        for name, member in shape.members.items():
            location = member.serialization.get("location")
            if location == "header":
                headers[member.serialization["name"].lower()] = name
            elif location == "uri":
                uri_member = name
            elif location is None and shape.serialization.get("payload") == name:
                body_member = name
                body_max = member.metadata.get("max")
        out_headers: dict[str, str] = {}
        if op.output_shape is not None:
            for name, member in op.output_shape.members.items():
                if member.serialization.get("location") == "header":
                    out_headers[name] = member.serialization["name"]
        uri = op.http["requestUri"]
        checks = {
            name: _quick_check(shape.members[name]) for name in (*headers.values(), uri_member)
        }
        return cls(
            name=op.name,
            path_suffix=uri.rsplit("/", 1)[-1],
            input_shape=shape,
            header_members=headers,
            uri_member=uri_member,
            body_member=body_member,
            body_max=body_max,
            response_headers=out_headers,
            success_status=int(op.http.get("responseCode", 200)),
            quick_checks=checks,
            _wire_headers={name.encode("latin-1"): member for name, member in headers.items()},
            _required=frozenset(shape.required_members) - {body_member},
            _integers=frozenset(
                name
                for name, member in shape.members.items()
                if member.type_name in ("integer", "long")
            ),
        )

    def parse(
        self, path_value: str, headers: Iterable[tuple[bytes, bytes]], body_length: int
    ) -> dict[str, Any]:
        """Members of the request, validated against the model; raises :class:`RequestInvalid`."""
        params: dict[str, Any] = {self.uri_member: path_value}
        wire = self._wire_headers
        for raw_name, raw_value in headers:
            member = wire.get(raw_name)
            if member is not None:
                try:
                    # Optional whitespace around a field value is not part of it (RFC 9110).
                    value = raw_value.decode("ascii").strip(" \t")
                except UnicodeDecodeError:
                    raise RequestInvalid(
                        f"1 validation error detected: Value at '{_lower_first(member)}' failed to "
                        "satisfy constraint: Member must contain only ASCII characters"
                    ) from None
                params[member] = (
                    int(value) if member in self._integers and value.isdigit() else value
                )
        body_ok = self.body_max is None or body_length <= self.body_max
        checks = self.quick_checks
        if (
            body_ok
            and self._required <= params.keys()
            and all(checks[name](value) for name, value in params.items())
        ):
            return params
        violations: list[ShapeViolation] = validate(self.input_shape, _without_body(params, self))
        if self.body_max is not None and body_length > self.body_max:
            violations.append(
                ShapeViolation(
                    path="body",
                    value=None,
                    constraint=f"Member must have length less than or equal to {self.body_max}",
                )
            )
        if violations:
            raise RequestInvalid(format_violations(violations))
        return params


def _quick_check(shape: Shape) -> Callable[[object], bool]:
    """A predicate that is true exactly when ``validate`` would find nothing wrong."""
    metadata = shape.metadata
    low = metadata.get("min")
    high = metadata.get("max")
    if shape.type_name == "string":
        raw = metadata.get("pattern")
        pattern = compile_pattern(raw) if raw is not None else None
        enum = metadata.get("enum")

        def check_string(value: object) -> bool:
            # Header values are ASCII, so len() equals the Java (UTF-16) length AWS counts.
            return (
                isinstance(value, str)
                and value.isascii()
                and (low is None or len(value) >= low)
                and (high is None or len(value) <= high)
                and (enum is None or value in enum)
                and (pattern is None or pattern.fullmatch(value) is not None)
            )

        return check_string
    if shape.type_name in ("integer", "long"):

        def check_integer(value: object) -> bool:
            return (
                isinstance(value, int)
                and not isinstance(value, bool)
                and (low is None or value >= low)
                and (high is None or value <= high)
            )

        return check_integer
    return lambda value: False  # anything else always takes the full validation path


def _without_body(params: dict[str, Any], op: RuntimeOperation) -> dict[str, Any]:
    # The body is checked by length alone: never walk (or echo) megabytes of payload.
    if op.body_member is None:
        return params
    return {**params, op.body_member: b""}


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]
