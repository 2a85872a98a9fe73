"""Translation of the models' Java regexes into Python patterns, checked on the real models."""

from __future__ import annotations

import functools
import unicodedata

import pytest
from botocore.loaders import Loader
from botocore.model import ServiceModel

from sagehost.protocol import shapes
from sagehost.protocol.java_regex import compile_pattern

TAG_PATTERN = "([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)"


@functools.cache
def service(name: str) -> ServiceModel:
    return ServiceModel(Loader().load_service_model(name, "service-2"), name)


def all_patterns() -> set[str]:
    found = set()
    for name in ("sagemaker", "sagemaker-runtime"):
        model = service(name)
        for shape_name in model.shape_names:
            pattern = model.shape_for(shape_name).metadata.get("pattern")
            if pattern is not None:
                found.add(pattern)
    return found


def test_every_model_pattern_compiles() -> None:
    patterns = all_patterns()
    assert len(patterns) > 200
    untranslatable = sorted(p for p in patterns if compile_pattern(p) is None)
    assert untranslatable == []


@pytest.mark.parametrize(
    ("pattern", "accepted", "rejected"),
    [
        ("\\p{ASCII}*", ["", "text/csv; q=1\t"], ["caf\u00e9"]),
        ("\\A\\S[\\p{Print}]*\\z", ["model.tar.gz", "a b"], [" a", "a\n", "a\u00e9"]),
        (
            TAG_PATTERN,
            ["h\u00e9llo w\u00f6rld 12", "\u65e5\u672c", "a:b/c=d+e-f@g"],
            ["a\tb", "a!"],
        ),
        (
            "([\\p{L}\\p{Z}\\p{N}_.:\\/=+\\-@]*)${1,128}",
            ["\u0661\u0662\u0663 x"],  # Arabic-Indic digits are \p{N}
            ["a\u200bb"],  # zero-width space is Cf, not Z
        ),
        (
            "[\\u0020-\\uD7FF\\uE000-\\uFFFD\\uD800\\uDC00-\\uDBFF\\uDFFF\\t]*",
            ["tab\there \U0001f600"],
            ["bell\x07", "\ufffe"],
        ),
        (
            "arn:[\\p{Alnum}\\-]+:lambda:[\\p{Alnum}\\-]+:[0-9]{12}:function:.*",
            ["arn:aws:lambda:us-east-1:123456789012:function:f"],
            [
                "arn:aws:lambda:us-east-1:123456789012:function:f\rx",
                "arn:a\u00e9:lambda:r:1:function:",
            ],
        ),
        ("[\\p{L}\\p{M}\\p{S}\\p{N}\\p{P}]+", ["e\u0301\u20ac!"], ["a b"]),
        ("\\d+", ["123"], ["\u0661"]),  # Java's \d is ASCII only
    ],
)
def test_java_constructs_translate_faithfully(
    pattern: str, accepted: list[str], rejected: list[str]
) -> None:
    compiled = compile_pattern(pattern)
    assert compiled is not None
    assert [s for s in accepted if not compiled.fullmatch(s)] == []
    assert [s for s in rejected if compiled.fullmatch(s)] == []


def test_java_only_syntax_we_cannot_express_is_skipped_not_crashed() -> None:
    assert compile_pattern("[a-z&&[^aeiou]]+") is None  # class intersection
    assert compile_pattern("\\p{IsGreek}+") is None  # scripts are not supported
    assert compile_pattern("\\Gabc") is None


def test_unscanned_planes_hold_only_unassigned_and_private_use() -> None:
    # _categories() scans planes 0-3 and 14 only and assumes this for the rest.
    assert set(map(unicodedata.category, map(chr, range(0x40000, 0xE0000)))) == {"Cn"}
    private = [chr(p) for plane in (0xF0000, 0x100000) for p in range(plane, plane + 0xFFFE)]
    assert set(map(unicodedata.category, private)) == {"Co"}


def test_shapes_re_exports_the_same_cached_function() -> None:
    assert shapes.compile_pattern is compile_pattern
