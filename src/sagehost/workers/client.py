"""HTTP to containers: ``/ping`` probes and ``/invocations`` calls over one connection pool.

This is the invoke hot path. One pool serves every instance of every fleet, so keep-alive
connections are reused per ``host:port`` (see ``http1`` for why it is not a general client).
A container sees only ``Host``, the headers the platform forwards (runtime-api.md §8.3) and
``Content-Length`` (``Transfer-Encoding: chunked`` for a streamed body of unknown length):
nothing like ``User-Agent`` or ``Accept-Encoding`` is added.

A streamed request body (``ContainerRequest.body`` an async iterable) is uploaded with
back-pressure on a fresh connection and never retried; see ``http1``. What its iterable
raises propagates unchanged, as does ``ValueError`` when it yields more or fewer bytes than
``body_length``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sagehost.core.errors import (
    ContainerRefused,
    ContainerResponseTooLarge,
    ContainerTimeout,
    ContainerUnreachable,
)
from sagehost.core.ports import ContainerRequest, ContainerResponse, ContainerStream
from sagehost.protocol import container as contract
from sagehost.workers.http1 import (
    BodyTooLarge,
    ConnectionPool,
    NotConnected,
    Origin,
    StreamResponse,
)

# A /ping body is normally empty; a larger one is read (to keep the connection) up to this.
_PING_MAX_BODY = 1024 * 1024
_ORIGIN_CACHE = 1024  # distinct base URLs remembered; instances get new ports on restart


class ContainerClient:
    """Calls containers; create it inside the running loop and ``close()`` it on shutdown."""

    def __init__(self, pool: ConnectionPool | None = None) -> None:
        self._pool = pool if pool is not None else ConnectionPool()
        self._origins: dict[str, tuple[Origin, str]] = {}

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self, base_url: str, timeout_s: float) -> bool:
        """True when ``GET /ping`` answers 200 within ``timeout_s``."""
        try:
            origin, prefix = self._origin(base_url)
            response = await self._pool.request(
                origin,
                "GET",
                prefix + contract.PING_PATH,
                timeout_s=timeout_s,
                max_body=_PING_MAX_BODY,
            )
        except (OSError, BodyTooLarge, ValueError):  # TimeoutError is an OSError
            return False
        return response.status == 200

    async def invoke(self, base_url: str, request: ContainerRequest) -> ContainerResponse:
        """Send one call and read the whole body, up to ``request.max_response_bytes``."""
        origin, prefix = self._origin(base_url)
        try:
            response = await self._pool.request(
                origin,
                request.method,
                prefix + request.path,
                request.headers,
                request.body,
                body_length=request.body_length,
                timeout_s=request.timeout_s,
                max_body=request.max_response_bytes,
            )
        except TimeoutError:
            raise _timeout(request) from None
        except BodyTooLarge as exc:
            raise _too_large(exc.limit) from None
        except OSError as exc:
            raise _unreachable(exc) from None
        return ContainerResponse(response.status, response.headers, response.body)

    @asynccontextmanager
    async def stream(
        self, base_url: str, request: ContainerRequest
    ) -> AsyncIterator[ContainerStream]:
        """Send one call and hand back the body chunk by chunk; ``timeout_s`` bounds the stream
        (sending the request body included)."""
        origin, prefix = self._origin(base_url)
        deadline = asyncio.get_running_loop().time() + request.timeout_s
        try:
            async with self._pool.stream(
                origin,
                request.method,
                prefix + request.path,
                request.headers,
                request.body,
                body_length=request.body_length,
                deadline=deadline,
            ) as response:
                yield ContainerStream(response.status, response.headers, _chunks(response, request))
        except TimeoutError:
            raise _timeout(request) from None
        except OSError as exc:
            raise _unreachable(exc) from None

    def _origin(self, base_url: str) -> tuple[Origin, str]:
        found = self._origins.get(base_url)
        if found is None:
            if len(self._origins) >= _ORIGIN_CACHE:
                self._origins.clear()
            found = self._origins[base_url] = Origin.from_url(base_url)
        return found


async def _chunks(response: StreamResponse, request: ContainerRequest) -> AsyncIterator[bytes]:
    try:
        async for chunk in response:
            yield chunk
    except TimeoutError:
        raise _timeout(request) from None
    except OSError as exc:
        raise _unreachable(exc) from None


def _too_large(limit: int) -> ContainerResponseTooLarge:
    return ContainerResponseTooLarge(
        f"The container's response is larger than {limit} bytes.", limit=limit
    )


def _timeout(request: ContainerRequest) -> ContainerTimeout:
    return ContainerTimeout(f"The container did not answer within {request.timeout_s:g} seconds.")


def _unreachable(exc: OSError) -> ContainerUnreachable:
    if isinstance(exc, NotConnected):
        return ContainerRefused(f"The container refused the connection: {exc}")
    return ContainerUnreachable(
        f"The connection to the container failed: {str(exc) or type(exc).__name__}"
    )
