"""Helpers for bodies that arrive as async iterators of chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator


async def read_capped(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """At most ``limit`` bytes from the start of ``chunks`` (an error body, say); stops reading
    once the limit is reached."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        parts.append(chunk[: limit - size])
        size += len(parts[-1])
        if size >= limit:
            break
    return b"".join(parts)
