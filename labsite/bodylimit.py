"""ASGI: a request body larger than its path allows is refused before it is read.

Django's ASGI handler reads the whole body (into a temporary file) before any view or
middleware runs, so a size check in the upload view comes too late: a client could
send gigabytes first. This wrapper answers 413 on the Content-Length alone, and stops
a body sent without one (chunked) as soon as it passes the limit.
"""
from __future__ import annotations

from typing import Awaitable, Callable

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

MESSAGE = "请求太大（最多 {mb} MB）。The request is too large (at most {mb} MB).\n"


class BodyLimit:
    """Wraps the HTTP app: `default` bytes per request body, more for listed path prefixes."""

    def __init__(self, app, *, default: int, prefixes: dict[str, int]) -> None:
        self.app = app
        self.default = default
        self.prefixes = prefixes

    def limit_for(self, path: str) -> int:
        """The body size a path accepts."""
        return next((n for prefix, n in self.prefixes.items() if path.startswith(prefix)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_for(scope.get("path", ""))
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            return await self._refuse(send, limit)
        seen, over, started = 0, False, False

        async def limited() -> dict:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    return {"type": "http.disconnect"}  # Django drops the request
            return message

        async def tracked(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, limited, tracked)
        if over and not started:
            await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        body = MESSAGE.format(mb=max(1, limit // 2**20)).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
