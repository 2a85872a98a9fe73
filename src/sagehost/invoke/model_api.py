"""The multi-model container API (§8.4) as requests, and the errors its answers become: pure
values for :mod:`sagehost.invoke.multimodel`, which sends them."""

from __future__ import annotations

import json

from sagehost.core.errors import ModelFailed, ModelNotReady
from sagehost.core.multimodel import LocalModel, model_name
from sagehost.core.ports import ContainerRequest, ContainerResponse

MODELS_PATH = "/models"
# A DELETE or GET of one model is bookkeeping in the container: it must not hang a load.
CONTROL_TIMEOUT_S = 60.0
MAX_MESSAGE = 2048
_JSON = [("Content-Type", "application/json")]


def invoke_path(target_model: str) -> str:
    return f"{MODELS_PATH}/{model_name(target_model)}/invoke"


def load_request(local: LocalModel, timeout_s: float) -> ContainerRequest:
    body = {"model_name": model_name(local.target_model), "url": str(local.path)}
    return ContainerRequest(
        body=json.dumps(body).encode(),
        headers=_JSON,
        timeout_s=timeout_s,
        path=MODELS_PATH,
        method="POST",
    )


def unload_request(target_model: str) -> ContainerRequest:
    return _about(target_model, "DELETE")


def status_request(target_model: str) -> ContainerRequest:
    return _about(target_model, "GET")


def _about(target_model: str, method: str) -> ContainerRequest:
    return ContainerRequest(
        body=b"",
        headers=[],
        timeout_s=CONTROL_TIMEOUT_S,
        path=f"{MODELS_PATH}/{model_name(target_model)}",
        method=method,
    )


def loaded(reply: ContainerResponse) -> bool:
    """A load succeeded, or found the model already loaded (409)."""
    return 200 <= reply.status < 300 or reply.status == 409


def unloaded(reply: ContainerResponse) -> bool:
    """An unload succeeded, or found the model gone already (404)."""
    return 200 <= reply.status < 300 or reply.status == 404


# -- errors ---------------------------------------------------------------------------------


def not_ready(container: str, target_model: str) -> ModelNotReady:
    return ModelNotReady(
        f"Model {target_model} is still being loaded into container {container}. Try again shortly."
    )


def load_refused(container: str, target_model: str, reply: ContainerResponse) -> ModelFailed:
    """The container answered a load with an error status."""
    text = reply.body[:MAX_MESSAGE].decode("utf-8", "replace")
    kind = "client" if reply.status < 500 else "server"
    return ModelFailed(
        f"Received {kind} error ({reply.status}) from {container} while loading "
        f'model {target_model} with message "{text}".',
        status=reply.status,
        original_message=text,
        container=container,
    )


def load_broken(container: str, target_model: str, reason: str) -> ModelFailed:
    """The load never got an answer: the connection failed or timed out."""
    return _unanswered(
        container, f"Loading model {target_model} into container {container} failed: {reason}"
    )


def fetch_failed(container: str, target_model: str, reason: str) -> ModelFailed:
    """The model's files could not be downloaded or extracted."""
    return _unanswered(
        container, f"Could not fetch model {target_model} for container {container}: {reason}"
    )


def load_timed_out(container: str, target_model: str, timeout_s: float) -> ModelFailed:
    return _unanswered(
        container,
        f"Model {target_model} did not finish loading into container {container} "
        f"within {timeout_s:g} seconds.",
    )


def _unanswered(container: str, message: str) -> ModelFailed:
    """A load that failed without an answer from the container: status 0, as for a call."""
    return ModelFailed(message, status=0, original_message=message, container=container)


def no_room(container: str, local: LocalModel, budget: int) -> ModelFailed:
    """No instance can ever make room: the model is too large, or pinned models fill them."""
    target, size = local.target_model, local.size
    if size > budget:
        reason = (
            f"Model {target} needs {size} bytes of memory, more than the {budget} bytes "
            "an instance of this endpoint may hold."
        )
    else:
        reason = (
            f"Model {target} needs {size} bytes of memory and pinned models fill every "
            "instance of this endpoint; unpin some with SageHost.UnpinModels."
        )
    return ModelFailed(reason, status=507, original_message=reason, container=container)
