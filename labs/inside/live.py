"""Live inside views over the session's terminal WebSocket (docs/protocol.md, "inside"):
read only while a socket subscribes, at most once per interval per session."""
from __future__ import annotations

import asyncio
import json

from asgiref.sync import sync_to_async
from celery.exceptions import TimeoutError as CeleryTimeout
from django.conf import settings

from labs.exceptions import Conflict, ServiceUnavailable
from labs.inside.host import READ_TIMEOUT

SLOW_VIEWS = ("container",)  # figures that move all the time: refreshed every few ticks
SLOW_EVERY = 3


def inside_poll(*, sid: str, host: str, views: list[str]) -> dict:
    """One read of a ready sandbox's views on its host (blocking: run it off the loop)."""
    from celery import current_app as app

    try:
        result = app.send_task("labs.inside.inside_read", args=[sid], kwargs={"views": views},
                               queue=f"host.{host}", expires=READ_TIMEOUT).get(timeout=READ_TIMEOUT)
    except CeleryTimeout:
        # Read for a WebSocket, where no reader's language is active: both.
        raise ServiceUnavailable("沙箱主机没有及时响应。The sandbox host did not answer in time.") from None
    if "error" in result:
        raise Conflict(result["error"])
    return result


def inside_poll_shared(*, sid: str, host: str, views: list[str]) -> dict | None:
    """inside_poll at most once per interval per session and set of views, however many
    sockets subscribe (tabs, watchers): one reads the host, the others take its answer
    from Redis; None when another socket is reading right now."""
    from labs.redis import sync_redis

    r = sync_redis()
    key = f"lab:inside:{sid}:{','.join(sorted(views))}"
    ttl = max(100, int(settings.LAB_INSIDE_INTERVAL * 900))
    cached = r.get(key)
    if cached is not None:
        return json.loads(cached)
    if not r.set(f"{key}:lock", 1, nx=True, px=ttl):
        return None
    data = inside_poll(sid=sid, host=host, views=views)
    r.set(key, json.dumps(data), px=ttl)
    return data


async def inside_feed(*, sid: str, host: str, views: list[str], ready, send) -> None:
    """While a panel subscribes: read the views every LAB_INSIDE_INTERVAL seconds and
    send each one that changed as {"type": "inside", "view", "data"}. Runs until
    cancelled (unsubscribe, or the WebSocket closes); costs nothing otherwise."""
    last: dict[str, str] = {}
    tick = 0
    while True:
        asked = [v for v in views if v not in SLOW_VIEWS or tick % SLOW_EVERY == 0]
        if ready() and asked:
            try:
                data = await sync_to_async(inside_poll_shared, thread_sensitive=False)(
                    sid=sid, host=host, views=asked) or {}
            except (Conflict, ServiceUnavailable) as exc:
                data = {}
                if last.get("error") != exc.message:
                    last["error"] = exc.message
                    await send({"type": "inside", "view": "error", "message": exc.message})
            for view, value in data.items():
                text = json.dumps(value, sort_keys=True)
                if last.get(view) != text:
                    last[view] = text
                    await send({"type": "inside", "view": view, "data": value})
        tick += 1
        await asyncio.sleep(settings.LAB_INSIDE_INTERVAL)
