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


# Frames waiting while a send is in progress are written together, up to this many bytes.
_BATCH_LIMIT = 256 * 1024


async def _pump(out: StreamOutput, send: Send) -> None:
    """Relay the stream. Each container chunk is still its own PayloadPart frame, but frames
    that pile up while a write is in progress go out in one HTTP chunk: one system call per
    write, not per event, which is what the throughput of small parts hinges on."""
    if out.first is not None:
        await send(_event(eventstream.payload_part(out.first)))
        frames: list[bytes] = []
        size = 0
        ready = asyncio.Event()
        room = asyncio.Event()
        room.set()
        finished = False

        async def read() -> None:
            nonlocal finished, size
            try:
                async for chunk in out.rest:
                    frame = eventstream.payload_part(chunk)
                    frames.append(frame)
                    size += len(frame)
                    ready.set()
                    if size >= _BATCH_LIMIT:
                        room.clear()
                        await room.wait()
            except ModelStreamFailed as failure:
                frames.append(eventstream.model_stream_error(failure.message, failure.error_code))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("response stream failed")
                frames.append(eventstream.internal_stream_failure("An internal failure occurred."))
            finally:
                finished = True
                ready.set()

        reader = asyncio.ensure_future(read())
        try:
            while True:
                await ready.wait()
                ready.clear()
                if frames:
                    batch = b"".join(frames)
                    frames.clear()
                    size = 0
                    room.set()
                    await send(_event(batch))
                if finished and not frames:
                    break
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _event(frame: bytes) -> dict[str, object]:
    return {"type": "http.response.body", "body": frame, "more_body": True}
