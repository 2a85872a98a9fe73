"""Translate the Java regular expressions in AWS service models into Python ``re`` patterns.

The models' ``pattern`` traits are Java regexes, and AWS matches them against the whole value.
Python's ``re`` (3.11+) already has possessive quantifiers and atomic groups; what it lacks is
translated here: Java's line-terminator-aware ``.`` and ``\\Z``, ``\\p{…}`` POSIX classes and
Unicode general categories, ``\\u`` surrogate pairs, ``\\Q…\\E`` quoting, quantified anchors
and the like. A pattern that still cannot be compiled is skipped (no constraint), so a model
update can never make validation crash.

Nothing is computed at import time: the Unicode category tables are built on first use.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
import warnings
from typing import Final

__all__ = ["compile_pattern"]

_JAVA_LINE_END: Final = "\\n\\r\\x85\\u2028\\u2029"
_QUANTIFIER: Final = re.compile(r"(?:[*+?]|\{\d+(?:,\d*)?\})[?+]?")
_POSIX: Final[dict[str, tuple[tuple[int, int], ...]]] = {
    # Java's POSIX classes are US-ASCII only (no UNICODE_CHARACTER_CLASS flag on AWS's side).
    "Lower": ((0x61, 0x7A),),
    "Upper": ((0x41, 0x5A),),
    "ASCII": ((0x00, 0x7F),),
    "Alpha": ((0x41, 0x5A), (0x61, 0x7A)),
    "Digit": ((0x30, 0x39),),
    "Alnum": ((0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)),
    "Punct": ((0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)),
    "Graph": ((0x21, 0x7E),),
    "Print": ((0x20, 0x7E),),
    "Blank": ((0x09, 0x09), (0x20, 0x20)),
    "Cntrl": ((0x00, 0x1F), (0x7F, 0x7F)),
    "XDigit": ((0x30, 0x39), (0x41, 0x46), (0x61, 0x66)),
    "Space": ((0x09, 0x0D), (0x20, 0x20)),
}
_CATEGORY_GROUPS: Final = {
    "L": "ultmo",
    "M": "nce",
    "N": "dlo",
    "P": "cdseifo",
    "S": "mcko",
    "Z": "slp",
    "C": "cfson",
}
_GENERAL_CATEGORIES: Final = frozenset(g + d for g, ds in _CATEGORY_GROUPS.items() for d in ds)
_ESCAPE_CLASSES: Final = {
    "h": "[ \\t\\xa0\\u1680\\u180e\\u2000-\\u200a\\u202f\\u205f\\u3000]",
    "H": "[^ \\t\\xa0\\u1680\\u180e\\u2000-\\u200a\\u202f\\u205f\\u3000]",
    "v": "[\\n\\x0b\\f\\r\\x85\\u2028\\u2029]",
    "V": "[^\\n\\x0b\\f\\r\\x85\\u2028\\u2029]",
    "R": "(?:\\r\\n|[\\n\\x0b\\f\\r\\x85\\u2028\\u2029])",
}


class _Untranslatable(ValueError):
    pass


@functools.cache
def compile_pattern(pattern: str) -> re.Pattern[str] | None:
    """The model's Java ``pattern`` as a Python regex for ``fullmatch``, or ``None`` when it
    cannot be translated (it is then not enforced). Cached: each pattern compiles once.

    Patterns using ``\\p{L}``-style Unicode categories build their tables on first use (about
    0.15 s once per process); a server can call this for every pattern at startup.
    """
    try:
        translated = _translate(pattern)
        with warnings.catch_warnings():
            # re's FutureWarnings flag set syntax whose meaning would change: not ours to guess.
            warnings.simplefilter("error")
            return re.compile(translated, re.ASCII)
    except (ValueError, re.error, FutureWarning):
        return None


def _translate(java: str) -> str:
    out: list[str] = []
    i, end = 0, len(java)
    in_class = False
    class_opened = -1  # index where the current class's members begin
    after_assertion = False
    while i < end:
        if after_assertion:
            after_assertion = False
            quantifier = _QUANTIFIER.match(java, i)
            if quantifier:
                # Java lets an anchor be quantified (the tag pattern has `${1,128}`); re does not.
                # Repeating an assertion changes nothing, unless it becomes optional.
                if quantifier.group()[0] in "*?" or quantifier.group().startswith("{0"):
                    out.pop()
                i = quantifier.end()
                continue
        char = java[i]
        if char == "\\":
            i, piece, after_assertion = _translate_escape(java, i, in_class)
            out.append(piece)
            continue
        i += 1
        if in_class:
            if char == "]" and i - 1 > class_opened:
                in_class = False
            elif char == "[" or (char == "&" and java.startswith("&", i)):
                raise _Untranslatable("Java class union or intersection")
            out.append(char)
        elif char == "[":
            in_class = True
            if java.startswith("^", i):
                out.append("[^")
                i += 1
            else:
                out.append("[")
            class_opened = i
        elif char == ".":
            out.append(f"[^{_JAVA_LINE_END}]")  # Java's dot excludes every line terminator
        elif char == "(" and java.startswith("?<", i) and java[i + 2 : i + 3].isalpha():
            out.append("(?P<")  # a named group, not a lookbehind
            i += 2
        else:
            out.append(char)
            after_assertion = char in "^$"
    return "".join(out)


def _translate_escape(java: str, i: int, in_class: bool) -> tuple[int, str, bool]:
    """Translate the escape at ``java[i]``; return (next index, text, is it an assertion)."""
    letter = java[i + 1 : i + 2]
    if not letter:
        raise _Untranslatable("trailing backslash")
    if letter in "pP":
        if java.startswith("{", i + 2):
            close = java.find("}", i + 2)
            if close < 0:
                raise _Untranslatable("unclosed property")
            name, after = java[i + 3 : close], close + 1
        else:
            name, after = java[i + 2 : i + 3], i + 3
        ranges = _property_ranges(name)
        if letter == "P":
            ranges = _complement(ranges)
        body = "".join(_class_range(low, high) for low, high in ranges)
        return after, body if in_class else f"[{body}]", False
    if letter == "u":
        unit = int(java[i + 2 : i + 6], 16)
        after = i + 6
        low = java[after + 2 : after + 6] if java.startswith("\\u", after) else ""
        if 0xD800 <= unit < 0xDC00 and len(low) == 4 and 0xDC00 <= int(low, 16) < 0xE000:
            # Java writes astral characters as UTF-16 surrogate pairs; re wants the code point.
            unit = 0x10000 + ((unit - 0xD800) << 10) + (int(low, 16) - 0xDC00)
            after += 6
        return after, _code_point(unit), False
    if letter == "x" and java.startswith("{", i + 2):
        close = java.index("}", i + 2)
        return close + 1, _code_point(int(java[i + 3 : close], 16)), False
    if letter == "0":
        digits = re.match(r"[0-3]?[0-7]{1,2}", java[i + 2 : i + 5])
        if digits is None:
            raise _Untranslatable("bad octal escape")
        return i + 2 + digits.end(), _code_point(int(digits.group(), 8)), False
    if letter == "Q":
        close = java.find("\\E", i + 2)
        close = len(java) if close < 0 else close
        return close + 2, re.escape(java[i + 2 : close]), False
    if letter in _ESCAPE_CLASSES and not in_class:
        return i + 2, _ESCAPE_CLASSES[letter], False
    simple = {"z": "\\Z", "Z": f"(?=[{_JAVA_LINE_END}]?\\Z)", "e": "\\x1b"}
    if letter in simple:
        return i + 2, simple[letter], letter != "e"
    if letter in "GXkhHvVR":
        raise _Untranslatable(f"unsupported escape \\{letter}")
    return i + 2, java[i : i + 2], letter in "AbB" and not in_class


def _property_ranges(name: str) -> tuple[tuple[int, int], ...]:
    if name in _POSIX:
        return _POSIX[name]
    category = name[2:] if name.startswith("Is") else name
    if category in ("L&", "LC"):
        return _merge(_category_ranges("Lu") + _category_ranges("Ll") + _category_ranges("Lt"))
    if category in _GENERAL_CATEGORIES or category in _CATEGORY_GROUPS:
        return _category_ranges(category)
    raise _Untranslatable(f"unsupported property {name}")


def _class_range(low: int, high: int) -> str:
    return _code_point(low) if low == high else f"{_code_point(low)}-{_code_point(high)}"


def _code_point(point: int) -> str:
    if point < 0x100:
        return f"\\x{point:02x}"
    return f"\\u{point:04x}" if point < 0x10000 else f"\\U{point:08x}"


def _complement(ranges: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    result, start = [], 0
    for low, high in ranges:
        if low > start:
            result.append((start, low - 1))
        start = high + 1
    if start <= sys.maxunicode:
        result.append((start, sys.maxunicode))
    return tuple(result)


def _merge(ranges: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return tuple(merged)


@functools.cache
def _category_ranges(category: str) -> tuple[tuple[int, int], ...]:
    """Code-point ranges of a one-letter (``L``) or two-letter (``Lu``) general category."""
    picked = (
        span for name, spans in _categories().items() if name.startswith(category) for span in spans
    )
    return _merge(tuple(picked))


@functools.cache
def _categories() -> dict[str, tuple[tuple[int, int], ...]]:
    """Every two-letter general category mapped to its code-point ranges.

    Only planes 0-3 and 14 hold assigned characters (Unicode 15); scanning just those takes
    about 0.15 s instead of 0.45 s. Planes 4-13 are unassigned and 15-16 private use, as a
    test checks against this Python's ``unicodedata``.
    """
    spans: dict[str, list[tuple[int, int]]] = {}
    for first, last in ((0x0, 0x3FFFF), (0xE0000, 0xEFFFF)):
        start, current = first, unicodedata.category(chr(first))
        for point in range(first + 1, last + 1):
            name = unicodedata.category(chr(point))
            if name != current:
                spans.setdefault(current, []).append((start, point - 1))
                start, current = point, name
        spans.setdefault(current, []).append((start, last))
    spans["Cn"].append((0x40000, 0xDFFFF))
    for plane in (0xF0000, 0x100000):
        spans["Co"].append((plane, plane + 0xFFFD))
        spans["Cn"].append((plane + 0xFFFE, plane + 0xFFFF))
    return {name: _merge(tuple(found)) for name, found in spans.items()}
