"""The one table from domain and protocol errors to AWS error shapes.

Anything not in the table is a bug: it is logged with its traceback and the client gets
``InternalFailure`` with no detail.
"""

from __future__ import annotations

import logging

from sagehost.core import errors as core
from sagehost.core.resources import log_group_arn
from sagehost.protocol import errors as wire
from sagehost.protocol.control import ControlRequestInvalid
from sagehost.protocol.runtime import RequestInvalid

log = logging.getLogger("sagehost.gateway")


def runtime_error(
    error: BaseException, *, region: str, account: str, endpoint: str
) -> wire.WireError:
    """The rest-json error for a runtime call."""
    match error:
        case core.NotAuthenticated():
            return wire.auth_error(error.code, error.message)
        case RequestInvalid():
            return wire.validation_error(error.message)
        case core.InvalidRequest():
            return wire.validation_error(error.message, error.error_code)
        case core.ModelFailed():
            return wire.model_error(
                error.message,
                original_status=error.status,
                original_message=error.original_message,
                log_stream_arn=log_group_arn(region, account, endpoint),
            )
        case core.ModelNotReady():
            return wire.model_not_ready(error.message)
        case core.NoHealthyInstance():
            return wire.service_unavailable(error.message)
        case core.DependencyFailed():
            return wire.dependency_failed(error.message)
        case core.UnknownOperation():
            return wire.unknown_operation(error.message)
    log.error("unexpected error on the runtime API", exc_info=error)
    return wire.internal_failure()


def control_error(error: BaseException) -> wire.WireError:
    """The JSON 1.1 error for a control-plane call."""
    match error:
        case core.NotAuthenticated():
            return wire.auth_error(error.code, error.message)
        case ControlRequestInvalid():
            return wire.WireError(400, error.code, error.message)
        case core.InvalidRequest():
            return wire.control_validation(error.message)
        case core.UnknownOperation():
            return wire.unknown_operation(error.message)
    log.error("unexpected error on the control plane", exc_info=error)
    return wire.internal_failure()
