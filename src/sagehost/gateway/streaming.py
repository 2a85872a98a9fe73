"""Send an open response stream to the client as an ``application/vnd.amazon.eventstream`` body.

Each container chunk becomes one PayloadPart event, sent as it arrives. uvicorn's ``send`` waits
while the client's socket is full, so a slow client slows the reads from the container instead
of growing a buffer. A client that goes away cancels the stream, which closes the container
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sagehost.core.errors import ModelStreamFailed
from sagehost.core.invocation import StreamOutput
from sagehost.gateway.http import Receive, Send
from sagehost.protocol import eventstream

log = logging.getLogger("sagehost.gateway")

_EVENT_STREAM = eventstream.CONTENT_TYPE.encode()


async def send_stream(out: StreamOutput, receive: Receive, send: Send, request_id: str) -> None:
    """Answer 200 and pump the stream; never raises once the response has started."""
    headers = [
        (b"content-type", _EVENT_STREAM),
        (b"x-amzn-invoked-production-variant", out.invoked_variant.encode()),
        (b"x-amzn-requestid", request_id.encode()),
    ]
    if out.content_type is not None:
        headers.append((b"x-amzn-sagemaker-content-type", out.content_type.encode("latin-1")))
    if out.custom_attributes is not None:
        headers.append(
            (b"x-amzn-sagemaker-custom-attributes", out.custom_attributes.encode("latin-1"))
        )
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    pump = asyncio.ensure_future(_pump(out, send))
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((pump, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        pump.cancel()
        gone.cancel()
        await asyncio.gather(pump, gone, return_exceptions=True)
        aclose = getattr(out.rest, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


async def _pump(out: StreamOutput, send: Send) -> None:
    try:
        if out.first is not None:
            await send(_event(eventstream.payload_part(out.first)))
            async for chunk in out.rest:
                await send(_event(eventstream.payload_part(chunk)))
    except ModelStreamFailed as failure:
        await send(_event(eventstream.model_stream_error(failure.message, failure.error_code)))
    except asyncio.CancelledError:
        raise
    except Exception:
        # Our own fault mid-stream: the status line is gone, so it travels as an event.
        log.exception("response stream failed")
        await send(_event(eventstream.internal_stream_failure("An internal failure occurred.")))
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _event(frame: bytes) -> dict[str, object]:
    return {"type": "http.response.body", "body": frame, "more_body": True}
