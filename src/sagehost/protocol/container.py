"""The SageMaker container contract as data.

A worker process ("container") serves two routes on one port: ``GET /ping`` answers 200 with an
empty body once the model is ready, and ``POST /invocations`` runs one prediction. The platform
configures the container through environment variables and forwards a fixed set of request
headers. Both sides of the contract import their names from here: the worker adapter (which starts
containers and calls them) and the bundled ``modelhost`` (which is one).

Everything here is pure: constants and small functions of a mapping, no ``os.environ`` and no I/O.
See runtime-api.md §8 (container contract) and §9 (inference-toolkit conventions).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Final

# --- Routes -------------------------------------------------------------------------------------

PING_PATH: Final = "/ping"
INVOCATIONS_PATH: Final = "/invocations"
#: Batch transform only (out of scope); listed so BYO containers written for batch are understood.
EXECUTION_PARAMETERS_PATH: Final = "/execution-parameters"
#: Multi-model container API root (§8.4): ``/models[/<name>[/invoke]]``.
MODELS_PATH: Final = "/models"

DEFAULT_PORT: Final = 8080

# --- Environment variables set by the platform, the SDK or the user (§8.5) -----------------------

ENV_BIND_TO_PORT: Final = "SAGEMAKER_BIND_TO_PORT"
ENV_SAFE_PORT_RANGE: Final = "SAGEMAKER_SAFE_PORT_RANGE"
ENV_PROGRAM: Final = "SAGEMAKER_PROGRAM"
ENV_SUBMIT_DIRECTORY: Final = "SAGEMAKER_SUBMIT_DIRECTORY"
ENV_DEFAULT_INVOCATIONS_ACCEPT: Final = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
ENV_MODEL_SERVER_WORKERS: Final = "SAGEMAKER_MODEL_SERVER_WORKERS"
ENV_MODEL_SERVER_TIMEOUT: Final = "SAGEMAKER_MODEL_SERVER_TIMEOUT"
ENV_MODEL_SERVER_TIMEOUT_SECONDS: Final = "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS"
ENV_STARTUP_TIMEOUT: Final = "SAGEMAKER_STARTUP_TIMEOUT"
ENV_MAX_PAYLOAD_IN_MB: Final = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
ENV_BASE_DIR: Final = "SAGEMAKER_BASE_DIR"
ENV_MULTI_MODEL: Final = "SAGEMAKER_MULTI_MODEL"
ENV_CONTAINER_LOG_LEVEL: Final = "SAGEMAKER_CONTAINER_LOG_LEVEL"
ENV_REGION: Final = "SAGEMAKER_REGION"

# sagehost's own additions: containers run as local processes, so the model directory and the
# listening address are configurable instead of fixed by a container image.
ENV_SAGEHOST_MODEL_DIR: Final = "SAGEHOST_MODEL_DIR"
ENV_SAGEHOST_BIND_HOST: Final = "SAGEHOST_BIND_HOST"

DEFAULT_BASE_DIR: Final = "/opt/ml"
MODEL_SUBDIR: Final = "model"
MULTI_MODEL_SUBDIR: Final = "models"
CODE_SUBDIR: Final = "code"
DEFAULT_PROGRAM: Final = "inference.py"
REQUIREMENTS_FILE: Final = "requirements.txt"
DEFAULT_BIND_HOST: Final = "127.0.0.1"
DEFAULT_INVOCATIONS_ACCEPT: Final = "application/json"
DEFAULT_MODEL_SERVER_TIMEOUT_SECONDS: Final = 60
DEFAULT_MAX_PAYLOAD_IN_MB: Final = 6
MIB: Final = 1024 * 1024
#: 6 MiB, the InvokeEndpoint body limit (§3.1, §11).
DEFAULT_MAX_PAYLOAD_BYTES: Final = DEFAULT_MAX_PAYLOAD_IN_MB * MIB

# --- Headers (canonical spelling; HTTP compares them case-insensitively) -------------------------

HEADER_CONTENT_TYPE: Final = "Content-Type"
HEADER_ACCEPT: Final = "Accept"
HEADER_CUSTOM_ATTRIBUTES: Final = "X-Amzn-SageMaker-Custom-Attributes"
HEADER_TARGET_MODEL: Final = "X-Amzn-SageMaker-Target-Model"
HEADER_SESSION_ID: Final = "X-Amzn-SageMaker-Session-Id"
HEADER_INFERENCE_ID: Final = "X-Amzn-SageMaker-Inference-Id"
HEADER_ENABLE_EXPLANATIONS: Final = "X-Amzn-SageMaker-Enable-Explanations"
HEADER_NEW_SESSION_ID: Final = "X-Amzn-SageMaker-New-Session-Id"
HEADER_CLOSED_SESSION_ID: Final = "X-Amzn-SageMaker-Closed-Session-Id"

#: Request headers the platform forwards to ``POST /invocations`` when the client sent them (§8.3).
FORWARDED_REQUEST_HEADERS: Final[tuple[str, ...]] = (
    HEADER_CONTENT_TYPE,
    HEADER_ACCEPT,
    HEADER_CUSTOM_ATTRIBUTES,
    HEADER_TARGET_MODEL,
    HEADER_SESSION_ID,
    HEADER_INFERENCE_ID,
    HEADER_ENABLE_EXPLANATIONS,
)

#: Response headers the platform copies from the container to the client (§3.2). A container may
#: also announce a new session under ``HEADER_SESSION_ID`` (DJL does, §7.6).
PASSED_THROUGH_RESPONSE_HEADERS: Final[tuple[str, ...]] = (
    HEADER_CONTENT_TYPE,
    HEADER_CUSTOM_ATTRIBUTES,
    HEADER_NEW_SESSION_ID,
    HEADER_CLOSED_SESSION_ID,
)

#: Prefix shared by every SageMaker-specific header.
SAGEMAKER_HEADER_PREFIX: Final = "x-amzn-sagemaker-"


def base_dir(environ: Mapping[str, str]) -> str:
    """``$SAGEMAKER_BASE_DIR`` or ``/opt/ml``."""
    return environ.get(ENV_BASE_DIR) or DEFAULT_BASE_DIR


def model_dir(environ: Mapping[str, str]) -> str:
    """The extracted model's directory: ``$SAGEHOST_MODEL_DIR``, else ``<base>/model``."""
    return environ.get(ENV_SAGEHOST_MODEL_DIR) or posixpath.join(base_dir(environ), MODEL_SUBDIR)


def program_module(environ: Mapping[str, str]) -> str:
    """The handler module name: ``$SAGEMAKER_PROGRAM`` without ``.py``, else ``inference``."""
    program = environ.get(ENV_PROGRAM) or DEFAULT_PROGRAM
    return program[: -len(".py")] if program.endswith(".py") else program


def parse_safe_port_range(value: str) -> tuple[int, int]:
    """Parse ``"XXXX-YYYY"`` (inclusive) into ``(low, high)``; raises ValueError when malformed."""
    low_text, sep, high_text = value.partition("-")
    if not sep:
        raise ValueError(f"{ENV_SAFE_PORT_RANGE} must look like 'low-high', got {value!r}")
    low, high = int(low_text), int(high_text)
    if not 0 < low <= high < 65536:
        raise ValueError(f"{ENV_SAFE_PORT_RANGE} is not a valid port range: {value!r}")
    return low, high


def is_truthy(value: str | None) -> bool:
    """How the toolkits read boolean switches such as ``SAGEMAKER_MULTI_MODEL``."""
    return value is not None and value.strip().lower() in {"1", "true", "yes", "on"}
