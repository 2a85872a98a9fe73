"""Errors that carry their HTTP status, the way the inference toolkit's do.

Tree::

    Exception
    ├── ModelHostError            a request modelhost refuses; ``status_code`` is the answer
    │   ├── BadRequestError           400: the body cannot be decoded as its content type says
    │   │   └── SessionError              400: unknown, closed or expired session (sessions.py)
    │   ├── NotAcceptableError        406: no supported type in Accept (default output_fn)
    │   ├── PayloadTooLargeError      413: body over SAGEMAKER_MAX_PAYLOAD_IN_MB
    │   ├── UnsupportedFormatError    415: default input_fn cannot decode the content type
    │   └── ModelNotReadyError        503: /invocations before the model finished loading
    ├── ModelsApiError            a multi-model API refusal (``/models``), answered as JSON
    └── HandlerError (TypeError)  the handler module is unusable (a load failure, never a request)

User code may raise any exception with an integer ``status_code`` attribute (the toolkit's
``BaseInferenceToolkitError`` has one); ``status_and_message`` turns it into a response.
"""

from __future__ import annotations

from typing import ClassVar


class ModelHostError(Exception):
    """A request error raised by modelhost itself; ``message`` is what the client reads."""

    status_code: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(ModelHostError):
    status_code = 400


class NotAcceptableError(ModelHostError):
    status_code = 406


class PayloadTooLargeError(ModelHostError):
    status_code = 413


class UnsupportedFormatError(ModelHostError):
    status_code = 415


class ModelNotReadyError(ModelHostError):
    status_code = 503


class ModelsApiError(Exception):
    """A refusal of the multi-model container API, answered as JSON
    ``{"code": <status>, "type": <kind>, "message": <text>}`` (the model server's error shape)."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


class HandlerError(TypeError):
    """The handler module cannot be used as written (wrong parameter count, conflicting hooks)."""


def status_and_message(exc: BaseException) -> tuple[int, str]:
    """The response status and text/plain body for an exception raised while handling a request.

    An int ``status_code`` between 400 and 599 is honoured (anything else would let a failure pass
    for a success); every other exception is a 500. The body is the exception's ``message``
    attribute when it is a string (the toolkit's errors put a tuple in ``args``), else ``str(exc)``.
    """
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        status = 500
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        message = str(exc)
    return int(status), message or type(exc).__name__
