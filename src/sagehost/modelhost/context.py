"""The ``context`` object handed to handler functions that ask for one.

The toolkit passes the model server's context as an optional trailing argument. Ours is small:

- ``system_properties``: ``{"model_dir": "<path>"}``.
- ``request_headers``: the request's headers as a dict with lower-case keys (empty during
  loading), e.g. ``context.request_headers.get("x-amzn-sagemaker-custom-attributes")``.
- ``set_response_header(name, value)``: add an ``X-Amzn-SageMaker-*`` header to the response
  (custom attributes, new/closed session id). ``set_response_header(0, name, value)`` is also
  accepted, the multi-model-server spelling that toolkit scripts use.
- ``custom_attributes`` / ``set_custom_attributes(value)``: shorthands for custom attributes.
- ``get_request_header(idx, name)``: the multi-model-server spelling of a header lookup.
- ``session``: the call's stateful session (``sessions.Session``: ``session_id``, ``expires_at``,
  ``state``) when sessions are enabled and the call names or opens one, else None.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, overload

from sagehost.protocol.container import HEADER_CUSTOM_ATTRIBUTES, SAGEMAKER_HEADER_PREFIX

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_CUSTOM_ATTRIBUTES = HEADER_CUSTOM_ATTRIBUTES.lower()

if TYPE_CHECKING:
    from sagehost.modelhost.sessions import Session

RawHeaders = Sequence[tuple[bytes, bytes]]


class Context:
    """Per-call view of the request and the response headers the handler wants to add."""

    __slots__ = (
        "_raw_headers",
        "_request_headers",
        "response_headers",
        "session",
        "system_properties",
    )

    def __init__(
        self, model_dir: str, raw_headers: RawHeaders = (), session: Session | None = None
    ) -> None:
        self.system_properties: dict[str, str] = {"model_dir": model_dir}
        self.session = session
        #: Lower-case name -> value, in the order the handler set them.
        self.response_headers: dict[str, str] = {}
        self._raw_headers = raw_headers
        self._request_headers: dict[str, str] | None = None

    @property
    def request_headers(self) -> dict[str, str]:
        # Built on first use: most handlers never look, and this is the hot path.
        if self._request_headers is None:
            self._request_headers = {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in self._raw_headers
            }
        return self._request_headers

    @property
    def custom_attributes(self) -> str | None:
        """The request's ``X-Amzn-SageMaker-Custom-Attributes``, if the client sent it."""
        return self.request_headers.get(_CUSTOM_ATTRIBUTES)

    def set_custom_attributes(self, value: str) -> None:
        self.set_response_header(HEADER_CUSTOM_ATTRIBUTES, value)

    def get_request_header(self, idx: int, key: str) -> str | None:
        """Multi-model-server compatible lookup; ``idx`` is the batch index and must be 0."""
        _check_batch_index(idx)
        return self.request_headers.get(key.lower())

    @overload
    def set_response_header(self, name: str, value: str, /) -> None: ...

    @overload
    def set_response_header(self, idx: int, name: str, value: str, /) -> None: ...

    def set_response_header(self, *args: object) -> None:
        """Add a response header. Only ``X-Amzn-SageMaker-*`` names are allowed: the platform
        passes those through to the client, while framing headers set here would corrupt the
        response."""
        if len(args) == 3:
            idx, name, value = args
            if not isinstance(idx, int):
                raise TypeError("set_response_header(idx, name, value): idx must be an int")
            _check_batch_index(idx)
        elif len(args) == 2:
            name, value = args
        else:
            raise TypeError("set_response_header takes (name, value) or (idx, name, value)")
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError("response header name and value must be str")
        lowered = name.lower()
        if not _TOKEN.fullmatch(name) or not lowered.startswith(SAGEMAKER_HEADER_PREFIX):
            raise ValueError(f"only X-Amzn-SageMaker-* response headers may be set, not {name!r}")
        if not value.isascii() or not value.isprintable():
            raise ValueError(f"response header {name} must be printable ASCII")
        self.response_headers[lowered] = value


def _check_batch_index(idx: int) -> None:
    if idx != 0:
        raise IndexError(f"modelhost serves one request per call; batch index {idx} does not exist")
