"""One invocation through the user's handlers, run in a worker thread.

``Pipeline.invoke`` decodes the body (``str`` for JSON and CSV, else ``bytes``), then runs
``transform_fn``, or ``input_fn`` -> ``predict_fn`` -> ``output_fn``. It returns either a
``Complete`` response or a ``Stream`` when the prediction is an iterator (see ``is_stream``).
A stream from ``predict_fn`` passes each item through a user-defined ``output_fn``; with the
default ``output_fn`` (and from ``transform_fn``) items must already be ``bytes`` or ``str``.

Results become bodies the way the toolkit's model server does it: ``bytes``/``bytearray`` as is,
``str`` as UTF-8, anything else as JSON (indent 2, like multi-model-server). A ``(body,
content_type)`` tuple sets the content type; otherwise it is the accept type.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from sagehost.modelhost.context import Context
from sagehost.modelhost.defaults import UTF8_TYPES, media_type
from sagehost.modelhost.errors import BadRequestError


class Handler(NamedTuple):
    """A handler function and whether it takes the trailing ``context`` argument."""

    fn: Callable[..., Any]
    with_context: bool

    def call(self, context: Context, *args: Any) -> Any:
        if self.with_context:
            return self.fn(*args, context)
        return self.fn(*args)


@dataclass(slots=True)
class Complete:
    body: bytes
    content_type: str


@dataclass(slots=True)
class Stream:
    """A prediction to send as chunks. ``encode`` turns one item into ``(bytes, content_type)``;
    ``encode_is_user_code`` says whether it must run in a worker thread."""

    items: Iterator[Any] | AsyncIterator[Any]
    content_type: str
    encode: Callable[[Any], tuple[bytes, str | None]]
    encode_is_user_code: bool


Result = Complete | Stream


def is_stream(value: object) -> bool:
    """Generators, other iterators and async iterators stream; lists, tuples, str, bytes and
    dicts are iterable but not iterators, so they do not."""
    return isinstance(value, Iterator | AsyncIterator)


def stream_chunk(item: object) -> tuple[bytes, str | None]:
    """One stream item as bytes, with the content type when the item is a ``(body, type)`` tuple."""
    content_type = None
    if type(item) is tuple and len(item) == 2:
        item, content_type = item
        if not isinstance(content_type, str):
            raise TypeError("a stream item's content type must be a str")
    if isinstance(item, bytes):
        return item, content_type
    if isinstance(item, str):
        return item.encode("utf-8"), content_type
    if isinstance(item, bytearray | memoryview):
        return bytes(item), content_type
    raise TypeError(f"stream items must be bytes or str, got {type(item).__name__}")


class Pipeline:
    """The loaded model with its handler functions and optional hooks."""

    __slots__ = (
        "close_session_fn",
        "input_fn",
        "model",
        "model_dir",
        "model_unload_fn",
        "open_session_fn",
        "output_fn",
        "predict_fn",
        "transform_fn",
        "user_output_fn",
    )

    def __init__(
        self,
        *,
        model: Any,
        model_dir: str,
        transform_fn: Handler | None,
        input_fn: Handler,
        predict_fn: Handler,
        output_fn: Handler,
        user_output_fn: bool,
        model_unload_fn: Handler | None = None,
        open_session_fn: Handler | None = None,
        close_session_fn: Handler | None = None,
    ) -> None:
        self.model = model
        self.model_dir = model_dir
        self.transform_fn = transform_fn
        self.input_fn = input_fn
        self.predict_fn = predict_fn
        self.output_fn = output_fn
        self.user_output_fn = user_output_fn
        # Optional hooks: unloading (multi-model mode) and session open/close (sessions.py).
        self.model_unload_fn = model_unload_fn
        self.open_session_fn = open_session_fn
        self.close_session_fn = close_session_fn

    def invoke(
        self, body: bytes, content_type: str | None, accept: str, context: Context
    ) -> Result:
        data: str | bytes = body
        if content_type is not None and media_type(content_type) in UTF8_TYPES:
            try:
                data = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadRequestError(f"request body is not valid UTF-8: {exc}") from exc
        if self.transform_fn is not None:
            result = self.transform_fn.call(context, self.model, data, content_type, accept)
            return _to_result(result, accept)
        decoded = self.input_fn.call(context, data, content_type)
        prediction = self.predict_fn.call(context, decoded, self.model)
        if is_stream(prediction):
            if not self.user_output_fn:
                return Stream(prediction, accept, stream_chunk, False)
            output_fn = self.output_fn

            def encode(item: Any) -> tuple[bytes, str | None]:
                return stream_chunk(output_fn.call(context, item, accept))

            return Stream(prediction, accept, encode, True)
        return _to_result(self.output_fn.call(context, prediction, accept), accept)


def _to_result(result: Any, accept: str) -> Result:
    content_type = accept
    if type(result) is tuple and len(result) == 2:
        result, content_type = result
        if not isinstance(content_type, str):
            raise TypeError("the content type in a (body, content_type) result must be a str")
    if isinstance(result, bytes):
        return Complete(result, content_type)
    if isinstance(result, str):
        return Complete(result.encode("utf-8"), content_type)
    if isinstance(result, bytearray | memoryview):
        return Complete(bytes(result), content_type)
    if is_stream(result):
        return Stream(result, content_type, stream_chunk, False)
    try:
        text = json.dumps(result, indent=2)
    except TypeError as exc:
        raise TypeError(
            f"unable to serialize model output of type {type(result).__name__}"
        ) from exc
    return Complete(text.encode("utf-8"), content_type)
