"""An echo container with no web framework: asyncio protocol, httptools parser, uvloop.

``GET /ping`` answers 200; ``POST /invocations`` answers the request body with its content
type, in one write. It exists to measure sagehost's own capacity: every microsecond the
container spends is one the two cores cannot give to sagehost or the load generator, and an
ASGI server costs about twice what this does per call. Usage::

    SAGEMAKER_BIND_TO_PORT=8080 python bench/containers/echo_protocol.py
"""

from __future__ import annotations

import asyncio
import os

import httptools
import uvloop


class EchoProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._content_type = b"application/octet-stream"
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment] # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            assert self._transport is not None
            self._transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._content_type = b"application/octet-stream"
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self._content_type = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        assert self._transport is not None
        if self._url == b"/ping":
            self._transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            return
        body = b"".join(self._body)
        self._transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
            % (self._content_type, len(body), body)
        )


async def main() -> None:
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    server = await asyncio.get_running_loop().create_server(EchoProtocol, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main())
