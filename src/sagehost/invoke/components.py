"""Selecting the inference component a call names (§7.5)."""

from __future__ import annotations

from sagehost.core.errors import InvalidRequest
from sagehost.core.invocation import InvokeInput
from sagehost.core.live import LiveComponent, LiveEndpoint


def select_component(endpoint: LiveEndpoint, request: InvokeInput) -> LiveComponent | None:
    """The component named by InferenceComponentName, or None for an endpoint that serves its
    production variants directly."""
    name = request.inference_component
    if name is None:
        if endpoint.component_based:
            raise InvalidRequest(
                f"Endpoint {endpoint.name} of account {endpoint.account} hosts inference "
                "components; name one with InferenceComponentName."
            )
        return None
    component = endpoint.components.get(name)
    if component is None:
        raise InvalidRequest(
            f"Inference component {name} was not found for endpoint {endpoint.name} "
            f"of account {endpoint.account}."
        )
    return component
