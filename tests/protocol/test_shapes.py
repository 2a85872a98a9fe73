"""Validation and output shaping against botocore's real sagemaker / sagemaker-runtime models."""

from __future__ import annotations

import functools
import json
import re
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.loaders import Loader
from botocore.model import ServiceModel, Shape, StructureShape
from botocore.parsers import JSONParser
from hypothesis import given, settings
from hypothesis import strategies as st

from sagehost.protocol.shapes import (
    ECHO_LIMIT,
    REDACTED,
    ShapeViolation,
    format_violations,
    to_wire,
    validate,
)

MODEL_NAME_PATTERN = "[a-zA-Z0-9]([\\-a-zA-Z0-9]*[a-zA-Z0-9])?"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model/m"
TAG_PATTERN = "([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)"


@functools.cache
def service(name: str) -> ServiceModel:
    return ServiceModel(Loader().load_service_model(name, "service-2"), name)


def input_shape(operation: str, service_name: str = "sagemaker") -> StructureShape:
    shape = service(service_name).operation_model(operation).input_shape
    assert shape is not None
    return shape


def output_shape(operation: str, service_name: str = "sagemaker") -> StructureShape:
    shape = service(service_name).operation_model(operation).output_shape
    assert shape is not None
    return shape


def message(operation: str, value: object, service_name: str = "sagemaker") -> str:
    return format_violations(validate(input_shape(operation, service_name), value))


VARIANT = {
    "VariantName": "AllTraffic",
    "ModelName": "my-model",
    "InitialInstanceCount": 1,
    "InstanceType": "ml.m5.large",
    "InitialVariantWeight": 1.0,
}


# --- valid inputs ---------------------------------------------------------------------------


def test_valid_control_plane_inputs_pass() -> None:
    create_model = {
        "ModelName": "my-model",
        "PrimaryContainer": {
            "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/img:latest",
            "ModelDataUrl": "s3://bucket/model.tar.gz",
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "EMPTY": ""},
            "Mode": "SingleModel",
        },
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
        "Tags": [{"Key": "team", "Value": "ml"}],
        "EnableNetworkIsolation": False,
    }
    create_config = {
        "EndpointConfigName": "my-config",
        "ProductionVariants": [VARIANT, {**VARIANT, "VariantName": "Canary"}],
        "Tags": [{"Key": "ünïcode tag", "Value": "wert 1"}],
    }
    create_endpoint = {"EndpointName": "my-endpoint", "EndpointConfigName": "my-config"}
    assert validate(input_shape("CreateModel"), create_model) == []
    assert validate(input_shape("CreateEndpointConfig"), create_config) == []
    assert validate(input_shape("CreateEndpoint"), create_endpoint) == []


def test_valid_runtime_input_passes_without_reading_the_body() -> None:
    invoke = {
        "EndpointName": "my-endpoint",
        "Body": b"\x00" * 6291456,
        "ContentType": "application/json",
        "TargetModel": "model-a.tar.gz",
    }
    assert validate(input_shape("InvokeEndpoint", "sagemaker-runtime"), invoke) == []


def test_unknown_members_are_ignored_at_every_level() -> None:
    value = {
        "EndpointConfigName": "my-config",
        "ProductionVariants": [{**VARIANT, "FeatureFrom2030": {"Nested": [1, 2]}}],
        "BrandNewTopLevel": "x" * 1000,
    }
    assert validate(input_shape("CreateEndpointConfig"), value) == []


def test_null_optional_members_count_as_absent() -> None:
    value = {"EndpointName": "e", "EndpointConfigName": "c", "Tags": None}
    assert validate(input_shape("CreateEndpoint"), value) == []


# --- one message per violation kind --------------------------------------------------------


def test_missing_and_null_required_members() -> None:
    assert message("CreateModel", {}) == (
        "1 validation error detected: Value null at 'modelName' failed to satisfy constraint: "
        "Member must not be null"
    )
    assert message("CreateEndpoint", {"EndpointName": None}) == (
        "2 validation errors detected: "
        "Value null at 'endpointName' failed to satisfy constraint: Member must not be null; "
        "Value null at 'endpointConfigName' failed to satisfy constraint: Member must not be null"
    )


def test_pattern_is_matched_against_the_whole_value() -> None:
    assert input_shape("CreateModel").members["ModelName"].metadata["pattern"] == (
        MODEL_NAME_PATTERN
    )
    assert message("CreateModel", {"ModelName": "a b"}) == (
        "1 validation error detected: Value 'a b' at 'modelName' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {MODEL_NAME_PATTERN}"
    )
    # A prefix match is not enough: "ab-" starts with a valid name.
    assert message("CreateModel", {"ModelName": "ab-"}).startswith(
        "1 validation error detected: Value 'ab-' at 'modelName'"
    )


def test_string_length_bounds() -> None:
    name = "a" * 64
    assert message("CreateModel", {"ModelName": name}) == (
        f"1 validation error detected: Value '{name}' at 'modelName' failed to satisfy "
        "constraint: Member must have length less than or equal to 63"
    )
    tags = {"ModelName": "m", "Tags": [{"Key": "", "Value": "v"}]}
    assert message("CreateModel", tags) == (
        "1 validation error detected: Value '' at 'tags.1.member.key' failed to satisfy "
        "constraint: Member must have length greater than or equal to 1"
    )


def test_length_counts_utf16_code_units_like_java() -> None:
    key = "\U00020000" * 64  # a CJK letter: 64 code points, 128 UTF-16 units, the limit
    shape = input_shape("CreateModel")
    assert validate(shape, {"ModelName": "m", "Tags": [{"Key": key, "Value": ""}]}) == []
    violations = validate(shape, {"ModelName": "m", "Tags": [{"Key": key + "a", "Value": ""}]})
    constraints = [v.constraint for v in violations]
    assert constraints[0] == "Member must have length less than or equal to 128"


def test_numeric_range_bounds() -> None:
    assert message("ListModels", {"MaxResults": 101}) == (
        "1 validation error detected: Value '101' at 'maxResults' failed to satisfy constraint: "
        "Member must have value less than or equal to 100"
    )
    config = {
        "EndpointConfigName": "c",
        "ProductionVariants": [{**VARIANT, "InitialInstanceCount": 0}],
    }
    assert message("CreateEndpointConfig", config) == (
        "1 validation error detected: Value '0' at 'productionVariants.1.member."
        "initialInstanceCount' failed to satisfy constraint: Member must have value greater "
        "than or equal to 1"
    )


def test_float_bounds_and_values_print_as_java_doubles() -> None:
    config = {
        "EndpointConfigName": "c",
        "ProductionVariants": [{**VARIANT, "InitialVariantWeight": -1}],
    }
    assert message("CreateEndpointConfig", config) == (
        "1 validation error detected: Value '-1.0' at 'productionVariants.1.member."
        "initialVariantWeight' failed to satisfy constraint: Member must have value greater than "
        "or equal to 0.0"
    )
    memory = service("sagemaker").shape_for("MemoryInGiBAmount")
    assert format_violations(validate(memory, 2e7, root="memory")) == (
        "1 validation error detected: Value '2.0E7' at 'memory' failed to satisfy constraint: "
        "Member must have value less than or equal to 1.0E7"
    )


def test_enum() -> None:
    assert message("ListModels", {"SortBy": "Size"}) == (
        "1 validation error detected: Value 'Size' at 'sortBy' failed to satisfy constraint: "
        "Member must satisfy enum value set: [Name, CreationTime]"
    )


def test_list_size_and_nested_list_paths() -> None:
    assert message(
        "CreateEndpointConfig", {"EndpointConfigName": "c", "ProductionVariants": []}
    ) == (
        "1 validation error detected: Value '[]' at 'productionVariants' failed to satisfy "
        "constraint: Member must have length greater than or equal to 1"
    )
    second = {k: v for k, v in VARIANT.items() if k != "VariantName"}
    bad = {
        "EndpointConfigName": "c",
        "ProductionVariants": [VARIANT, second, {**VARIANT, "VariantName": "b_c"}],
    }
    assert [(v.path, v.value) for v in validate(input_shape("CreateEndpointConfig"), bad)] == [
        ("productionVariants.2.member.variantName", None),
        ("productionVariants.3.member.variantName", "b_c"),
    ]


def test_a_list_of_scalars_is_reported_once_with_every_rule() -> None:
    assert message("DeleteTags", {"ResourceArn": ARN, "TagKeys": ["ok", "", "fine"]}) == (
        "1 validation error detected: Value '[ok, , fine]' at 'tagKeys' failed to satisfy "
        "constraint: Member must satisfy constraint: [Member must have length less than or equal "
        "to 128, Member must have length greater than or equal to 1, Member must satisfy regular "
        f"expression pattern: {TAG_PATTERN}]"
    )


def test_map_keys_then_map_values_are_reported_once_each() -> None:
    env = {"1BAD": "x" * 1025, "GOOD": "v"}
    value = {"ModelName": "m", "PrimaryContainer": {"Environment": env}}
    echoed = "{1BAD=" + "x" * (ECHO_LIMIT - 6) + "..."
    path = "primaryContainer.environment"
    assert message("CreateModel", value) == (
        f"2 validation errors detected: Value '{echoed}' at '{path}' failed to satisfy "
        "constraint: Map keys must satisfy constraint: [Member must have length less than or "
        "equal to 1024, Member must have length greater than or equal to 0, Member must satisfy "
        f"regular expression pattern: [a-zA-Z_][a-zA-Z0-9_]*]; Value '{echoed}' at '{path}' "
        "failed to satisfy constraint: Map value must satisfy constraint: [Member must have "
        "length less than or equal to 1024, Member must have length greater than or equal to 0, "
        "Member must satisfy regular expression pattern: [\\S\\s]*]"
    )


def test_type_mismatches_are_flagged_for_serialization_exception() -> None:
    violations = validate(
        input_shape("CreateEndpointConfig"),
        {
            "EndpointConfigName": 5,
            "ProductionVariants": {"VariantName": "x"},
            "EnableNetworkIsolation": "true",
        },
    )
    assert violations == [
        ShapeViolation("endpointConfigName", 5, "Member must be of type string", True),
        ShapeViolation("productionVariants", REDACTED, "Member must be of type list", True),
        ShapeViolation("enableNetworkIsolation", "true", "Member must be of type boolean", True),
    ]
    # bool is not an integer, and a scalar list reports the element that has the wrong type
    assert validate(input_shape("ListModels"), {"MaxResults": True}) == [
        ShapeViolation("maxResults", True, "Member must be of type integer", True)
    ]
    assert validate(input_shape("DeleteTags"), {"ResourceArn": ARN, "TagKeys": ["k", 7]}) == [
        ShapeViolation("tagKeys.2.member", 7, "Member must be of type string", True)
    ]


def test_union_needs_exactly_one_member() -> None:
    union = service("sagemaker").shape_for("AutoMLProblemTypeConfig")
    two: dict[str, object] = {"TextClassificationJobConfig": {}, "ImageClassificationJobConfig": {}}
    violations = validate(union, two, root="autoMLProblemTypeConfig")
    assert [v for v in violations if v.path == "autoMLProblemTypeConfig"] == [
        ShapeViolation("autoMLProblemTypeConfig", two, "Member must have exactly one member set")
    ]
    assert validate(union, {}, root="u") == [
        ShapeViolation("u", {}, "Member must have exactly one member set")
    ]


def test_documents_are_accepted_as_any_json() -> None:
    document = Shape("Doc", {"type": "structure", "members": {}, "document": True})
    assert validate(document, [1, {"a": None}, "x"]) == []
    assert to_wire(document, {"keep": None}) == {"keep": None}


# --- echoing values ------------------------------------------------------------------------


def test_sensitive_values_are_never_kept_or_echoed() -> None:
    secret = "s" * 1025
    invoke = input_shape("InvokeEndpoint", "sagemaker-runtime")
    violations = validate(invoke, {"EndpointName": "e", "Body": b"x", "CustomAttributes": secret})
    assert violations == [
        ShapeViolation(
            "customAttributes", REDACTED, "Member must have length less than or equal to 1024"
        )
    ]
    assert format_violations(violations) == (
        "1 validation error detected: Value at 'customAttributes' failed to satisfy constraint: "
        "Member must have length less than or equal to 1024"
    )
    huge = validate(invoke, {"EndpointName": "e", "Body": b"\x00" * (6291456 + 1)})
    assert format_violations(huge) == (
        "1 validation error detected: Value at 'body' failed to satisfy constraint: "
        "Member must have length less than or equal to 6291456"
    )


def test_long_values_are_cut_and_blobs_summarised() -> None:
    name = "n" * 100_000
    text = message("CreateModel", {"ModelName": name})
    assert f"Value '{'n' * ECHO_LIMIT}...' at 'modelName'" in text
    assert len(text) < ECHO_LIMIT + 200
    long_list = ShapeViolation("xs", list(range(1_000_000)), "c")
    assert len(format_violations([long_list])) < ECHO_LIMIT + 100
    blob = ShapeViolation("b", b"abc", "c")
    assert format_violations([blob]) == (
        "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=3 cap=3]' at 'b' "
        "failed to satisfy constraint: c"
    )
    assert format_violations([ShapeViolation("f", False, "c")]).startswith(
        "1 validation error detected: Value 'false' at 'f'"
    )


def test_format_refuses_an_empty_list() -> None:
    with pytest.raises(ValueError):
        format_violations([])


# --- to_wire -------------------------------------------------------------------------------


def describe_endpoint_record() -> dict[str, Any]:
    created = datetime(2018, 6, 24, 19, 59, 29, 986_999, tzinfo=UTC)
    return {
        "EndpointName": "my-endpoint",
        "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/my-endpoint",
        "EndpointConfigName": "my-config",
        "EndpointStatus": "InService",
        "FailureReason": None,
        "CreationTime": created,
        "LastModifiedTime": 1529870400.1234,
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "CurrentWeight": 1.0,
                "CurrentInstanceCount": 1,
                "DeployedImages": [
                    {
                        "SpecifiedImage": "img:latest",
                        "ResolutionTime": datetime(2018, 6, 24, 21, 59, 29, 5_000),
                        "InternalOnly": "dropped",
                    }
                ],
                "VariantStatus": None,
            }
        ],
        "InternalBookkeeping": {"pid": 1234},
    }


def test_to_wire_formats_timestamps_and_drops_nulls_and_unknown_members() -> None:
    wire = to_wire(output_shape("DescribeEndpoint"), describe_endpoint_record())
    assert wire == {
        "EndpointName": "my-endpoint",
        "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/my-endpoint",
        "EndpointConfigName": "my-config",
        "EndpointStatus": "InService",
        "CreationTime": 1529870369.986,
        "LastModifiedTime": 1529870400.123,
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "CurrentWeight": 1.0,
                "CurrentInstanceCount": 1,
                "DeployedImages": [
                    {"SpecifiedImage": "img:latest", "ResolutionTime": 1529877569.005}
                ],
            }
        ],
    }
    assert '"CreationTime": 1529870369.986' in json.dumps(wire)


def test_botocore_parses_to_wire_output_back() -> None:
    shape = output_shape("DescribeEndpoint")
    body = json.dumps(to_wire(shape, describe_endpoint_record())).encode()
    parsed = JSONParser().parse({"body": body, "headers": {}, "status_code": 200}, shape)
    assert parsed["CreationTime"] == datetime(2018, 6, 24, 19, 59, 29, 986_000, tzinfo=UTC)
    image = parsed["ProductionVariants"][0]["DeployedImages"][0]
    assert image["ResolutionTime"] == datetime(2018, 6, 24, 21, 59, 29, 5_000, tzinfo=UTC)
    assert "FailureReason" not in parsed


def test_to_wire_timestamp_inputs() -> None:
    stamp = service("sagemaker").shape_for("Timestamp")
    plus_two = timezone(timedelta(hours=2))
    assert to_wire(stamp, datetime(1970, 1, 1, 2, 0, 1, 500_000, tzinfo=plus_two)) == 1.5
    assert to_wire(stamp, "2018-06-24T19:59:29.986Z") == 1529870369.986
    assert to_wire(stamp, 1529870369) == 1529870369.0


def test_to_wire_base64_blobs_and_leaves_header_members_out() -> None:
    output = output_shape("InvokeEndpoint", "sagemaker-runtime")
    value = {"Body": b"\x00\xffhi", "ContentType": "text/plain", "CustomAttributes": "a=1"}
    assert to_wire(output, value) == {"Body": "AP9oaQ=="}


# --- property tests ------------------------------------------------------------------------

ALNUM = string.ascii_letters + string.digits
alnum = st.sampled_from(ALNUM)
endpoint_names = st.one_of(
    alnum,
    st.builds(
        lambda first, middle, last: first + middle + last,
        alnum,
        st.text(alphabet=ALNUM + "-", max_size=61),
        alnum,
    ),
)


@settings(max_examples=300, deadline=None)
@given(endpoint_names)
def test_valid_endpoint_names_pass(name: str) -> None:
    pattern = input_shape("CreateEndpoint").members["EndpointName"].metadata["pattern"]
    assert re.fullmatch(pattern, name)  # the strategy itself is valid by construction
    assert (
        validate(input_shape("CreateEndpoint"), {"EndpointName": name, "EndpointConfigName": "c"})
        == []
    )
    runtime = {"EndpointName": name, "Body": b""}
    assert validate(input_shape("InvokeEndpoint", "sagemaker-runtime"), runtime) == []


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=ALNUM + "-", min_size=64, max_size=400))
def test_endpoint_names_over_63_characters_fail(name: str) -> None:
    violations = validate(
        input_shape("CreateEndpoint"), {"EndpointName": name, "EndpointConfigName": "c"}
    )
    assert (
        ShapeViolation("endpointName", name, "Member must have length less than or equal to 63")
        in violations
    )
    assert {v.path for v in violations} == {"endpointName"}
