"""HTTP to containers: ``/ping`` probes and ``/invocations`` calls over one shared aiohttp session.

This is the invoke hot path. One session and one connector serve every instance of every fleet,
so keep-alive connections are pooled per ``host:port``. aiohttp adds ``Accept``,
``Accept-Encoding``, ``User-Agent`` and a default ``Content-Type`` unless told not to; a container
must see only the headers the platform forwards (runtime-api.md §8.3), so all four are skipped
and sent only when the caller passes them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from sagehost.core.errors import ContainerResponseTooLarge, ContainerTimeout, ContainerUnreachable
from sagehost.core.ports import ContainerRequest, ContainerResponse
from sagehost.protocol import container as contract

_SKIP_AUTO_HEADERS = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})
# Below the idle timeout of common model servers (uvicorn 5 s), so that we drop an idle
# connection before the server does and a POST never races a server-side close.
_KEEPALIVE_S = 4.0


def new_session() -> aiohttp.ClientSession:
    """The pool's one session; create it inside the running loop and close it on shutdown."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=_KEEPALIVE_S)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        skip_auto_headers=_SKIP_AUTO_HEADERS,
        # Containers must not share cookies through us, nor reach each other via a proxy.
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=None),
    )


@dataclass(frozen=True)
class ContainerStream:
    """A response whose body is read as it arrives: ``chunks`` yields each piece in order."""

    status: int
    headers: Mapping[str, str]
    chunks: AsyncIterator[bytes]


class ContainerClient:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def ping(self, base_url: str, timeout_s: float) -> bool:
        """True when ``GET /ping`` answers 200 within ``timeout_s``."""
        try:
            async with self._session.get(
                base_url + contract.PING_PATH,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,
            ) as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def invoke(self, base_url: str, request: ContainerRequest) -> ContainerResponse:
        """Send one call and read the whole body, up to ``request.max_response_bytes``."""
        try:
            async with self._session.post(
                base_url + request.path,
                data=request.body,
                headers=request.headers,
                timeout=aiohttp.ClientTimeout(total=request.timeout_s),
                allow_redirects=False,
            ) as response:
                limit = request.max_response_bytes
                length = response.content_length
                if length is None:
                    body = await _capped(response, limit)
                elif length <= limit:
                    body = await response.read()
                else:
                    raise _too_large(limit)
                return ContainerResponse(response.status, _headers(response), body)
        except TimeoutError:
            raise _timeout(request) from None
        except aiohttp.ClientError as exc:
            raise _unreachable(exc) from None

    @asynccontextmanager
    async def stream(
        self, base_url: str, request: ContainerRequest
    ) -> AsyncIterator[ContainerStream]:
        """Send one call and hand back the body chunk by chunk; ``timeout_s`` bounds the stream."""
        try:
            async with self._session.post(
                base_url + request.path,
                data=request.body,
                headers=request.headers,
                timeout=aiohttp.ClientTimeout(total=request.timeout_s),
                allow_redirects=False,
            ) as response:
                yield ContainerStream(
                    response.status, _headers(response), _chunks(response, request)
                )
        except TimeoutError:
            raise _timeout(request) from None
        except aiohttp.ClientError as exc:
            raise _unreachable(exc) from None


async def _chunks(
    response: aiohttp.ClientResponse, request: ContainerRequest
) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.content.iter_any():
            yield chunk
    except TimeoutError:
        raise _timeout(request) from None
    except aiohttp.ClientError as exc:
        raise _unreachable(exc) from None


async def _capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    # No Content-Length (chunked): read until EOF, failing as soon as the limit is passed.
    parts: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def _too_large(limit: int) -> ContainerResponseTooLarge:
    return ContainerResponseTooLarge(
        f"The container's response is larger than {limit} bytes.", limit=limit
    )


def _headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in response.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def _timeout(request: ContainerRequest) -> ContainerTimeout:
    return ContainerTimeout(f"The container did not answer within {request.timeout_s:g} seconds.")


def _unreachable(exc: aiohttp.ClientError) -> ContainerUnreachable:
    return ContainerUnreachable(
        f"The connection to the container failed: {str(exc) or type(exc).__name__}"
    )
