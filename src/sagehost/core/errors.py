"""Domain errors. They carry no HTTP: ``gateway/errors.py`` maps each to a wire shape.

Tree::

    SagehostError
    ├── NotAuthenticated            the caller could not be identified (SigV4)
    ├── InvalidRequest              a parameter is malformed or not allowed
    │   ├── EndpointNotFound        the runtime's NO_SUCH_ENDPOINT
    │   └── ResourceNotFound        a control-plane "Could not find ..."
    ├── ResourceConflict            "Cannot create already existing ..." / in-progress update
    ├── UnknownOperation            an X-Amz-Target we do not serve
    ├── ModelFailed                 the container answered non-2xx, timed out or broke
    ├── ModelStreamFailed           a response stream broke after its first byte
    ├── ModelNotReady               the model is being brought up; retry soon (429)
    ├── NoHealthyInstance           nothing can take the call right now (503)
    ├── DependencyFailed            model storage or another dependency failed (530)
    ├── DeploymentFailed            a fleet did not become healthy (never reaches a client)
    ├── ContainerUnreachable        adapter: the connection to a container failed
    │   └── ContainerRefused        adapter: nothing was sent; the call may go elsewhere
    ├── ContainerTimeout            adapter: no answer within the deadline
    └── ContainerResponseTooLarge   adapter: the answer exceeded the size cap
"""

from __future__ import annotations


class SagehostError(Exception):
    """Base of every error sagehost raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAuthenticated(SagehostError):
    """SigV4 failed. ``code`` is the AWS error code the client must see."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class InvalidRequest(SagehostError):
    """A request that can never succeed as sent."""

    error_code = "VALIDATION_ERROR"


class EndpointNotFound(InvalidRequest):
    error_code = "NO_SUCH_ENDPOINT"

    def __init__(self, endpoint_name: str, account: str) -> None:
        super().__init__(f"Endpoint {endpoint_name} of account {account} not found.")


class ResourceNotFound(InvalidRequest):
    """A control-plane lookup that failed; the message names the ARN."""


class ResourceConflict(InvalidRequest):
    """The resource exists already, or is busy with another change."""


class UnknownOperation(SagehostError):
    pass


class ModelFailed(SagehostError):
    """The model container failed an invocation.

    ``status`` is the container's HTTP status, 0 when it never answered.
    """

    def __init__(self, message: str, *, status: int, original_message: str, container: str) -> None:
        super().__init__(message)
        self.status = status
        self.original_message = original_message
        self.container = container


class ModelStreamFailed(SagehostError):
    """A response stream broke after its first byte reached the client.

    ``error_code`` is ``ModelInvocationTimeExceeded`` or ``StreamBroken``.
    """

    def __init__(self, message: str, error_code: str) -> None:
        super().__init__(message)
        self.error_code = error_code


class ModelNotReady(SagehostError):
    """The model cannot take the call yet but is being brought up (an inference component
    scaling up from zero copies, a multi-model load still running): the caller may retry."""


class NoHealthyInstance(SagehostError):
    pass


class DependencyFailed(SagehostError):
    pass


class DeploymentFailed(SagehostError):
    """A fleet could not start; ``message`` becomes the endpoint's FailureReason."""


class ContainerUnreachable(SagehostError):
    """The connection to a container failed before or during a call (adapter-level)."""


class ContainerRefused(ContainerUnreachable):
    """No connection to the container could be opened, so the call never reached the model
    and may safely go to another instance (adapter-level)."""


class Handoff(Exception):
    """A gateway replica cannot serve this call from its copy of the routing table (the endpoint
    is not in it, no instance it knows is ready, or one refused the connection): the primary
    gateway process serves it instead. The call has not reached any model."""


class ContainerTimeout(SagehostError):
    """A container did not answer within the invocation deadline (adapter-level)."""


class ContainerResponseTooLarge(SagehostError):
    """A container's response body exceeded the size limit (adapter-level).

    ``limit`` is the largest body accepted, in bytes.
    """

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit
