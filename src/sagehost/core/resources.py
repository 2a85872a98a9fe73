"""Names and ARNs of control-plane resources."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """A resource kind: the ARN resource type, also the catalog's table key."""

    MODEL = "model"
    ENDPOINT_CONFIG = "endpoint-config"
    ENDPOINT = "endpoint"
    INFERENCE_COMPONENT = "inference-component"


# The words AWS uses for each kind in error messages ("Could not find endpoint configuration ...").
KIND_WORDS = {
    Kind.MODEL: "model",
    Kind.ENDPOINT_CONFIG: "endpoint configuration",
    Kind.ENDPOINT: "endpoint",
    Kind.INFERENCE_COMPONENT: "inference component",
}


def arn(region: str, account: str, kind: Kind, name: str) -> str:
    """AWS puts the lower-cased name in the ARN while the resource keeps its case."""
    return f"arn:aws:sagemaker:{region}:{account}:{kind.value}/{name.lower()}"


def parse_arn(value: str) -> tuple[str, str, Kind, str] | None:
    """(region, account, kind, lower-cased name) of a SageMaker ARN, or None."""
    parts = value.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sagemaker":
        return None
    kind_name, _, name = parts[5].partition("/")
    try:
        kind = Kind(kind_name)
    except ValueError:
        return None
    if not name:
        return None
    return parts[3], parts[4], kind, name.lower()


def log_group_arn(region: str, account: str, endpoint_name: str) -> str:
    return f"arn:aws:logs:{region}:{account}:log-group:/aws/sagemaker/Endpoints/{endpoint_name}"
