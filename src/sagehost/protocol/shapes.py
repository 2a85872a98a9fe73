"""Check request values against botocore service-model shapes, and shape output values for JSON.

botocore's client-side ``ParamValidator`` only enforces ``min``; everything else (``max``,
``pattern``, ``enum``, required members, types) is the server's job, so this module does it
from the model itself rather than from hand-typed tables.

No I/O happens here: the caller loads the model once, at startup, and passes
``botocore.model.Shape`` objects in. Going through ``botocore.loaders`` skips building a
``Session`` (config files, credential chain); the model load itself, a gunzip and JSON parse of
the 2.4 MB ``sagemaker`` model, takes 50-100 ms either way, on top of 120-180 ms to import
botocore (``sagemaker-runtime`` is about 12 ms)::

    from botocore.loaders import Loader
    from botocore.model import ServiceModel

    model = ServiceModel(Loader().load_service_model("sagemaker", "service-2"), "sagemaker")
    shape = model.operation_model("CreateEndpointConfig").input_shape

Keep ``shape`` (and the ``ServiceModel``) alive: botocore caches each shape's members on the
object, so reusing it is what keeps ``validate`` fast.

Messages follow AWS's Coral format (``N validation error(s) detected: Value '…' at 'path' failed
to satisfy constraint: …``). Paths lower-case the first letter of each member name; list
elements are ``name.<1-based index>.member`` and map values ``name.<key>.member``. Lists of
scalars and scalar map keys/values are reported once for the whole collection, as AWS does
(``Member must satisfy constraint: [...]``, ``Map keys must satisfy constraint: [...]``,
``Map value must satisfy constraint: [...]``), listing every constraint of the element shape.

Values of shapes the model marks ``sensitive`` are never kept in a violation: the value is
``REDACTED`` and the message omits it (``Value at 'path' failed …``), which is what AWS prints for
Lambda's sensitive environment map. Echoed values are cut to ``ECHO_LIMIT`` characters and blobs
print as Java's ``ByteBuffer`` summary, so a request body is never echoed back.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping, Sequence, Sized
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, Final

from botocore.model import ListShape, MapShape, Shape, StructureShape

from sagehost.protocol.java_regex import compile_pattern

__all__ = [
    "ECHO_LIMIT",
    "REDACTED",
    "ShapeViolation",
    "compile_pattern",
    "format_violations",
    "to_wire",
    "validate",
]

ECHO_LIMIT: Final = 256
_SCALARS: Final = frozenset(
    {"string", "integer", "long", "float", "double", "boolean", "timestamp", "blob"}
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND: Final = timedelta(milliseconds=1)


class _Redacted:
    __slots__ = ()

    def __repr__(self) -> str:
        return "***"


REDACTED: Final = _Redacted()
"""Stands in for the value of a ``sensitive`` member in a ``ShapeViolation``."""


@dataclass(frozen=True, slots=True)
class ShapeViolation:
    """One failed constraint. ``type_error`` marks a JSON type mismatch: AWS rejects those
    while deserializing, with ``SerializationException`` rather than ``ValidationException``."""

    path: str
    value: object
    constraint: str
    type_error: bool = False


def validate(shape: Shape, value: object, *, root: str = "") -> list[ShapeViolation]:
    """Every constraint ``value`` breaks, in input order; ``[]`` when it is valid.

    ``value`` is decoded JSON keyed by member names (``datetime``/``bytes`` are accepted for
    timestamps/blobs too). Members the shape does not know are ignored: newer SDKs send newer
    fields. ``None`` counts as absent. ``root`` prefixes every path.
    """
    out: list[ShapeViolation] = []
    _check(shape, value, root, out)
    return out


def format_violations(violations: Sequence[ShapeViolation]) -> str:
    """AWS's message for a ``ValidationException``. ``violations`` must not be empty."""
    if not violations:
        raise ValueError("no violations to format")
    count = len(violations)
    head = f"{count} validation error{'' if count == 1 else 's'} detected: "
    return head + "; ".join(map(_format_one, violations))


def to_wire(shape: Shape, value: object) -> object:
    """``value`` ready for ``json.dumps`` as an output of ``shape``.

    Drops ``None`` and members the shape does not declare or binds outside the body (headers,
    status code); uses each member's wire name; timestamps (aware or UTC-naive ``datetime``,
    epoch seconds, ISO-8601 text) become epoch seconds rounded to the millisecond; blobs
    (``bytes``, or ``str`` taken as UTF-8) become base64 text; ``Enum`` members their value.
    """
    if isinstance(shape, StructureShape):
        if shape.metadata.get("document") or not isinstance(value, Mapping):
            return value
        members = shape.members
        body: dict[str, object] = {}
        for name, item in value.items():
            member = members.get(name)
            if item is None or member is None or "location" in member.serialization:
                continue
            wire_name: str = member.serialization.get("name") or name
            body[wire_name] = to_wire(member, item)
        return body
    if isinstance(shape, ListShape) and isinstance(value, list | tuple):
        return [to_wire(shape.member, item) for item in value if item is not None]
    if isinstance(shape, MapShape) and isinstance(value, Mapping):
        return {k: to_wire(shape.value, v) for k, v in value.items() if v is not None}
    kind = shape.type_name
    if kind == "timestamp":
        return _epoch_seconds(value)
    if kind == "blob" and isinstance(value, bytes | bytearray | memoryview | str):
        raw = value.encode() if isinstance(value, str) else bytes(value)
        return base64.b64encode(raw).decode("ascii")
    if isinstance(value, Enum):
        return value.value
    return value


def _epoch_seconds(value: object) -> object:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        # Integer milliseconds first: float arithmetic on the timedelta could land on .x99.
        return ((value - _EPOCH) // _MILLISECOND) / 1000
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value), 3)
    return value


# --- validation ---------------------------------------------------------------------------
# Paths are built only when something fails: a valid request allocates almost nothing.

_OK: Final[tuple[str, ...]] = ()


def _member_path(path: str, name: str) -> str:
    name = name[:1].lower() + name[1:]
    return f"{path}.{name}" if path else name


def _check(shape: Shape, value: object, path: str, out: list[ShapeViolation]) -> None:
    if shape.type_name in _SCALARS:
        _report_scalar(shape, value, path, _scalar_problems(shape, value), out)
    elif isinstance(shape, StructureShape):
        _check_structure(shape, value, path, out)
    elif isinstance(shape, ListShape):
        _check_list(shape, value, path, out)
    elif isinstance(shape, MapShape):
        _check_map(shape, value, path, out)


def _report_scalar(
    shape: Shape,
    value: object,
    path: str,
    problems: tuple[str, ...] | None,
    out: list[ShapeViolation],
) -> None:
    if problems is None:
        out.append(_type_violation(shape, value, path))
        return
    shown = value
    if shape.metadata.get("sensitive"):
        shown = REDACTED
    elif shape.type_name in ("float", "double") and isinstance(value, int):
        shown = float(value)  # echo as Java would, having read it into a Double
    out.extend(ShapeViolation(path, shown, problem) for problem in problems)


def _check_structure(
    shape: StructureShape, value: object, path: str, out: list[ShapeViolation]
) -> None:
    metadata = shape.metadata
    if metadata.get("document"):
        return  # any JSON value is a document; its content is the service's business
    if not isinstance(value, Mapping):
        out.append(_type_violation(shape, value, path))
        return
    for name in metadata.get("required", _OK):
        if value.get(name) is None:
            out.append(ShapeViolation(_member_path(path, name), None, "Member must not be null"))
    members = shape.members
    present = 0
    for name, item in value.items():
        member = members.get(name)
        if member is None or item is None:
            continue
        present += 1
        if member.type_name in _SCALARS:
            problems = _scalar_problems(member, item)
            if problems is not _OK:
                _report_scalar(member, item, _member_path(path, name), problems, out)
        else:
            _check(member, item, _member_path(path, name), out)
    if present != 1 and metadata.get("union"):
        rule = "Member must have exactly one member set"
        out.append(ShapeViolation(path, _redact(shape, value), rule))


def _check_list(shape: ListShape, value: object, path: str, out: list[ShapeViolation]) -> None:
    if not isinstance(value, list | tuple):
        out.append(_type_violation(shape, value, path))
        return
    _check_size(shape, value, path, out)
    element = shape.member
    if element.type_name in _SCALARS:
        rule = _check_scalars(element, value, path, out, "Member")
        if rule is not None:
            out.append(ShapeViolation(path, _redact(shape, value), rule))
        return
    for index, item in enumerate(value, 1):
        item_path = f"{path}.{index}.member"
        if item is None:
            out.append(ShapeViolation(item_path, None, "Member must not be null"))
        else:
            _check(element, item, item_path, out)


def _check_map(shape: MapShape, value: object, path: str, out: list[ShapeViolation]) -> None:
    if not isinstance(value, Mapping):
        out.append(_type_violation(shape, value, path))
        return
    _check_size(shape, value, path, out)
    # AWS reports all key problems once, then all value problems once: keys first.
    rule = _check_scalars(shape.key, list(value), path, out, "Map keys")
    if rule is not None:
        out.append(ShapeViolation(path, _redact(shape, value), rule))
    element = shape.value
    if element.type_name in _SCALARS:
        rule = _check_scalars(element, list(value.values()), path, out, "Map value")
        if rule is not None:
            out.append(ShapeViolation(path, _redact(shape, value), rule))
        return
    for key, item in value.items():
        item_path = f"{path}.{key}.member"
        if item is None:
            out.append(ShapeViolation(item_path, None, "Member must not be null"))
        else:
            _check(element, item, item_path, out)


def _check_scalars(
    element: Shape, items: Sequence[object], path: str, out: list[ShapeViolation], what: str
) -> str | None:
    """Type-check ``items`` one by one (a type error names its element); if any element breaks
    a constraint, return the one collection-wide rule AWS prints, listing all of them."""
    failed = has_null = False
    for index, item in enumerate(items, 1):
        if item is None:
            has_null = True
            continue
        problems = _scalar_problems(element, item)
        if problems is None:
            out.append(_type_violation(element, item, f"{path}.{index}.member"))
        elif problems:
            failed = True
    if not (failed or has_null):
        return None
    rules = _declared_constraints(element)
    if has_null:
        rules.append("Member must not be null")
    return f"{what} must satisfy constraint: [{', '.join(rules)}]"


def _check_size(shape: Shape, value: Sized, path: str, out: list[ShapeViolation]) -> None:
    metadata = shape.metadata
    if "min" in metadata or "max" in metadata:
        for rule in _bounds(metadata, len(value), "length", shape.type_name):
            out.append(ShapeViolation(path, _redact(shape, value), rule))


def _scalar_problems(shape: Shape, value: object) -> tuple[str, ...] | None:
    """The constraints one scalar breaks (``_OK`` if none), or ``None`` for a wrong JSON type."""
    kind = shape.type_name
    metadata = shape.metadata
    if kind == "string":
        if not isinstance(value, str):
            return None
        if not metadata:
            return _OK
        problems = _OK
        if "min" in metadata or "max" in metadata:
            problems = _bounds(metadata, _java_length(value), "length", kind)
        enum = metadata.get("enum")
        if enum is not None and value not in enum:
            problems += (f"Member must satisfy enum value set: [{', '.join(enum)}]",)
        pattern = metadata.get("pattern")
        if pattern is not None:
            compiled = compile_pattern(pattern)
            if compiled is not None and compiled.fullmatch(value) is None:
                problems += (f"Member must satisfy regular expression pattern: {pattern}",)
        return problems
    if isinstance(value, bool):
        return _OK if kind == "boolean" else None
    if kind in ("integer", "long"):
        return _bounds(metadata, value, "value", kind) if isinstance(value, int) else None
    if kind in ("float", "double"):
        return _bounds(metadata, value, "value", kind) if isinstance(value, int | float) else None
    if kind == "timestamp":
        return _OK if isinstance(value, int | float | datetime) else None
    if kind == "blob":
        size = _blob_length(value)
        return None if size is None else _bounds(metadata, size, "length", kind)
    return None  # boolean shape, non-bool value


def _bounds(metadata: Mapping[str, Any], measured: float, what: str, kind: str) -> tuple[str, ...]:
    high, low = metadata.get("max"), metadata.get("min")
    if high is not None and measured > high:
        problem = f"Member must have {what} less than or equal to {_bound(high, kind)}"
        if low is not None and measured < low:  # only if max < min, a broken model
            return (
                problem,
                f"Member must have {what} greater than or equal to {_bound(low, kind)}",
            )
        return (problem,)
    if low is not None and measured < low:
        return (f"Member must have {what} greater than or equal to {_bound(low, kind)}",)
    return _OK


def _declared_constraints(shape: Shape) -> list[str]:
    """Every rule of ``shape`` in AWS's order: max, min, enum, pattern."""
    metadata = shape.metadata
    kind = shape.type_name
    what = "value" if kind in ("integer", "long", "float", "double") else "length"
    rules = []
    if "max" in metadata:
        bound = _bound(metadata["max"], kind)
        rules.append(f"Member must have {what} less than or equal to {bound}")
    if "min" in metadata:
        bound = _bound(metadata["min"], kind)
        rules.append(f"Member must have {what} greater than or equal to {bound}")
    if "enum" in metadata:
        rules.append(f"Member must satisfy enum value set: [{', '.join(metadata['enum'])}]")
    if "pattern" in metadata:
        rules.append(f"Member must satisfy regular expression pattern: {metadata['pattern']}")
    return rules


def _bound(limit: float, kind: str) -> str:
    return _java_double(float(limit)) if kind in ("float", "double") else str(int(limit))


def _java_length(text: str) -> int:
    # AWS measures Java String.length(): UTF-16 code units, so astral characters count twice.
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def _blob_length(value: object) -> int | None:
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, str):  # JSON carries blobs as base64 text
        try:
            return len(base64.b64decode(value, validate=True))
        except binascii.Error:
            return None
    return None


def _type_violation(shape: Shape, value: object, path: str) -> ShapeViolation:
    # Only a scalar of a non-sensitive shape is echoed: a mistyped container could hold anything.
    scalar = isinstance(value, str | int | float) and not shape.metadata.get("sensitive")
    shown = value if scalar else REDACTED
    return ShapeViolation(path, shown, f"Member must be of type {shape.type_name}", True)


def _redact(shape: Shape, value: object) -> object:
    """``value`` with every sensitive part replaced by ``REDACTED`` (error path only)."""
    if shape.metadata.get("sensitive"):
        return REDACTED
    if isinstance(shape, StructureShape) and isinstance(value, Mapping):
        if shape.metadata.get("document"):
            return value
        members = shape.members
        return {k: _redact(members[k], v) for k, v in value.items() if k in members}
    if isinstance(shape, ListShape) and isinstance(value, list | tuple):
        return [_redact(shape.member, item) for item in value]
    if isinstance(shape, MapShape) and isinstance(value, Mapping):
        return {k: _redact(shape.value, v) for k, v in value.items()}
    return value


# --- messages -----------------------------------------------------------------------------


def _format_one(violation: ShapeViolation) -> str:
    value = violation.value
    if value is REDACTED:
        shown = "Value"
    elif value is None:
        shown = "Value null"
    else:
        shown = f"Value '{_echo(value)}'"
    return f"{shown} at '{violation.path}' failed to satisfy constraint: {violation.constraint}"


def _echo(value: object) -> str:
    parts: list[str] = []
    _render(value, parts, ECHO_LIMIT + 1)
    text = "".join(parts)
    return text if len(text) <= ECHO_LIMIT else text[:ECHO_LIMIT] + "..."


def _render(value: object, parts: list[str], budget: int) -> int:
    """Append Java's ``toString`` of ``value`` to ``parts``; stop once ``budget`` chars are out,
    so a huge list is never rendered whole. Returns the budget left."""
    if budget <= 0:
        return 0
    if isinstance(value, Mapping):
        return _render_items(value.items(), "{", "}", parts, budget, pairs=True)
    if isinstance(value, list | tuple):
        return _render_items(enumerate(value), "[", "]", parts, budget, pairs=False)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = _java_double(value)
    elif isinstance(value, bytes | bytearray | memoryview):
        text = f"java.nio.HeapByteBuffer[pos=0 lim={len(value)} cap={len(value)}]"
    elif value is None:
        text = "null"
    else:
        text = str(value)
    text = text[:budget]
    parts.append(text)
    return budget - len(text)


def _render_items(
    items: Any, opening: str, closing: str, parts: list[str], budget: int, *, pairs: bool
) -> int:
    parts.append(opening)
    budget -= 1
    for position, (key, item) in enumerate(items):
        if budget <= 0:
            return 0
        if position:
            parts.append(", ")
            budget -= 2
        if pairs:
            budget = _render(key, parts, budget)
            parts.append("=")
            budget -= 1
        budget = _render(item, parts, budget)
    parts.append(closing)
    return budget - 1


def _java_double(number: float) -> str:
    """Java's ``Double.toString``: plain between 1e-3 and 1e7, else ``1.5E10`` notation."""
    if math.isnan(number) or math.isinf(number):
        return "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
    if number == 0 or 1e-3 <= abs(number) < 1e7:
        return repr(number)
    sign, digits, exponent = Decimal(repr(number)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits))
    mantissa = text[0] + "." + (text[1:] or "0")
    return f"{'-' if sign else ''}{mantissa}E{exponent + len(text) - 1}"
