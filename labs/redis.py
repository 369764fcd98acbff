"""The web side's Redis connections (sync for views and tasks, async for consumers)."""
from __future__ import annotations

import functools

import redis
import redis.asyncio as aioredis
from django.conf import settings


@functools.cache
def sync_redis() -> redis.Redis:
    """A shared blocking client (thread-safe connection pool)."""
    return redis.Redis.from_url(settings.STREAMS_REDIS_URL, socket_timeout=5, socket_connect_timeout=2)


def async_redis() -> aioredis.Redis:
    """A new asyncio client; the caller closes it (one per WebSocket, for XREAD BLOCK)."""
    return aioredis.from_url(settings.STREAMS_REDIS_URL, socket_connect_timeout=2)
