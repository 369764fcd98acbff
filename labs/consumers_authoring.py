"""The lab-test WebSocket: a version's author (or an admin) watches its `labs test` table
fill in, one row per step, as the worker host runs it. Nothing is sent up."""
from __future__ import annotations

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from labs.consumers import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, CLOSE_UNAUTHENTICATED
from labs.testruns import test_group


@database_sync_to_async
def _version(user, slug: str, number: int) -> tuple[int, dict | None]:
    """(0, the version's stored test) for its author or an admin; (close code, None) otherwise."""
    from labs.authoring import version_get, version_view
    from labs.exceptions import NotFound
    from labs.models import Lab

    try:
        version = version_get(user=user, slug=slug, number=number)
    except NotFound:
        exists = Lab.objects.filter(slug=slug, versions__number=number).exists()
        return (CLOSE_FORBIDDEN if exists else CLOSE_NOT_FOUND), None
    return 0, {"id": version.pk, **version_view(version)["test"]}


class LabTestConsumer(AsyncWebsocketConsumer):
    """One page watching one version's test."""

    async def connect(self) -> None:
        kwargs = self.scope["url_route"]["kwargs"]
        self.group = None
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        refused, test = await _version(user, kwargs["slug"], int(kwargs["number"]))
        if refused:
            await self.close(code=refused)
            return
        self.group = test_group(test["id"])
        await self.channel_layer.group_add(self.group, self.channel_name)
        # Read again after joining the group: no row falls between the two (the page dedups by index).
        _, test = await _version(user, kwargs["slug"], int(kwargs["number"]))
        await self.send(text_data=json.dumps({"type": "hello", "state": test["state"], "rows": test["rows"]},
                                             ensure_ascii=False))

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page only listens."""

    async def labtest_event(self, message: dict) -> None:
        await self.send(text_data=json.dumps(message["event"], ensure_ascii=False))
