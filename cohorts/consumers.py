"""The dashboard WebSocket: a cohort's instructors get small JSON updates (a trainee's
changed row and the lab's new numbers) through the channel layer; nothing is sent up."""
from __future__ import annotations

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from cohorts.services import cohort_group

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


@database_sync_to_async
def _access(user, cohort_id: int) -> int:
    """0 when the user runs the cohort, else the close code to answer with."""
    from cohorts.models import Cohort
    from cohorts.selectors import teaches

    cohort = Cohort.objects.filter(id=cohort_id).first()
    if cohort is None:
        return CLOSE_NOT_FOUND
    return 0 if teaches(user=user, cohort=cohort) else CLOSE_FORBIDDEN


class DashboardConsumer(AsyncWebsocketConsumer):
    """One open dashboard of one cohort."""

    async def connect(self) -> None:
        self.cohort_id = int(self.scope["url_route"]["kwargs"]["cohort_id"])
        self.joined = False
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        refused = await _access(user, self.cohort_id)
        if refused:
            await self.close(code=refused)
            return
        await self.channel_layer.group_add(cohort_group(self.cohort_id), self.channel_name)
        self.joined = True
        await self.send(text_data=json.dumps({"type": "hello", "cohort": self.cohort_id}))

    async def disconnect(self, code: int) -> None:
        if self.joined:
            await self.channel_layer.group_discard(cohort_group(self.cohort_id), self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Dashboards only listen."""

    async def cohort_event(self, message: dict) -> None:
        await self.send(text_data=json.dumps(message["event"], ensure_ascii=False))
