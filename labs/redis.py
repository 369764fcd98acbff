"""The web side's Redis connections (sync for views and tasks, async for consumers)."""
from __future__ import annotations

import asyncio
import functools
import weakref

import redis
import redis.asyncio as aioredis
from django.conf import settings

# One asyncio connection pool per event loop (uvicorn runs one per process): every
# WebSocket of the process draws from it, instead of a client and pool of its own.
_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.ConnectionPool] = weakref.WeakKeyDictionary()


@functools.cache
def sync_redis() -> redis.Redis:
    """A shared blocking client (thread-safe connection pool)."""
    return redis.Redis.from_url(settings.STREAMS_REDIS_URL, socket_timeout=5, socket_connect_timeout=2)


def async_redis() -> aioredis.Redis:
    """An asyncio client on the process's shared pool; the caller closes it (aclose()
    hands its connection back, the pool stays). A blocking XREAD holds one connection
    while it waits, so the pool is as large as the WebSockets reading at once."""
    loop = asyncio.get_running_loop()
    pool = _POOLS.get(loop)
    if pool is None:
        pool = _POOLS[loop] = aioredis.ConnectionPool.from_url(settings.STREAMS_REDIS_URL, socket_connect_timeout=2)
    return aioredis.Redis(connection_pool=pool)
