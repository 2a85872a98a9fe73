"""A container that is not listening: the call is known not to have been sent."""

from __future__ import annotations

import asyncio

import pytest

from sagehost.core.errors import ContainerRefused
from sagehost.core.ports import ContainerRequest
from sagehost.testing.server import free_port
from sagehost.workers.client import ContainerClient
from sagehost.workers.http1 import ConnectionPool, NotConnected, Origin


def test_refused_connection_is_not_connected() -> None:
    async def scenario() -> None:
        pool = ConnectionPool()
        try:
            with pytest.raises(NotConnected):
                origin, _ = Origin.from_url(f"http://127.0.0.1:{free_port()}")
                await pool.request(
                    origin, "POST", "/invocations", [], b"x", timeout_s=2, max_body=100
                )
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_client_maps_refusal_to_container_refused() -> None:
    async def scenario() -> None:
        client = ContainerClient()
        try:
            with pytest.raises(ContainerRefused):
                await client.invoke(
                    f"http://127.0.0.1:{free_port()}", ContainerRequest(b"x", [], timeout_s=2)
                )
        finally:
            await client.close()

    asyncio.run(scenario())
