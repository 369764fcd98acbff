"""The terminal WebSocket: speaks the protocol (docs/protocol.md) and nothing else.

Bytes never pass through the database or the channel layer: output is read from the
session's Redis stream `term:<sid>:out` (resuming after the id the browser last saw)
and input is appended to `term:<sid>:in`; the host's relay does the rest. The channel
layer only carries small control events (state changes, check results).
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from labs.inside.live import inside_feed
from labs.models import Session
from labs.redis import async_redis
from labs.selectors import display_name
from labs.services import session_group, session_verify_host, session_verify_start
from sandbox.inside.host import VIEWS
from sandbox.relay import streams
from sandbox.relay.tabs import tabs_key

log = logging.getLogger(__name__)
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_ENDED = 4410
CLOSE_TOO_MANY = 4429
MAX_FRAME = 256 * 1024
STREAM_ID = streams.ENTRY_ID
INPUT_MAX = 64 * 1024
HOST_CHECK_MS = 3000
ACK_STEP = 256 * 1024
# A connection counts against its user's limit while its entry is fresher than this;
# the output pump refreshes it (so a crashed web process frees its places).
WS_TTL = 60
# A watcher that vanished without a disconnect (a killed server) is forgotten after this.
WATCHERS_TTL = 3600


def watchers_key(sid: str) -> str:
    """Redis hash of a session's read-only viewers: channel name -> display name."""
    return f"term:{sid}:watchers"


_id = streams.entry_id_order


@database_sync_to_async
def _viewer(user, sid: str) -> tuple[Session | None, bool, bool]:
    """(session, exists, read_only) as this user may see it."""
    from labs.exceptions import NotFound
    from labs.selectors import session_for_viewer

    try:
        session, read_only = session_for_viewer(user=user, sid=sid)
    except NotFound:
        return None, Session.objects.filter(id=sid).exists(), False
    return session, True, read_only


class TerminalConsumer(AsyncWebsocketConsumer):
    """One browser tab's view of one sandbox terminal."""

    # The terminal's streams: the sandbox's own (a tab's: labs/consumers_tabs.py).
    term_id = property(lambda self: self.sid)

    async def _prepare(self, session: Session) -> bool:
        """Before hello: False when the socket was closed instead (a subclass's say)."""
        return True

    async def connect(self) -> None:
        self.sid = self.scope["url_route"]["kwargs"]["sid"]
        self.reader: asyncio.Task | None = None
        self.inside: asyncio.Task | None = None  # the inside panel's feed, while subscribed
        self.redis = None
        self.read_only = True
        # (stream id, bytes sent through it) not yet acknowledged by the page
        self.sent_log: collections.deque = collections.deque()
        self.sent_total = 0
        self.acked_forwarded = 0
        self.ws_key = ""
        self.input_refused = False
        self.state_checked = 0.0
        await self.accept()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        session, exists, self.read_only = await _viewer(user, self.sid)
        self.host = session.host if session is not None else ""
        self.state = session.state if session is not None else ""
        if session is None:
            await self.close(code=CLOSE_FORBIDDEN if exists else CLOSE_NOT_FOUND)
            return
        if session.state not in Session.LIVE_STATES:
            await self._send_json({"type": "hello", "session": self.sid, "state": session.state, "replay": False, "message": session.message})
            await self.close(code=CLOSE_ENDED)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        since = (query.get("since") or [None])[0]
        if since is not None and not STREAM_ID.match(since):
            since = None
        self.redis = async_redis()
        await self.channel_layer.group_add(session_group(self.sid), self.channel_name)
        # The state as of joining the group: a change made before (a warm-pool start is
        # ready within milliseconds) is in the row, any later one arrives as an event.
        self.state = await database_sync_to_async(
            lambda: Session.objects.filter(id=self.sid).values_list("state", flat=True).first())() or self.state
        if not await self._take_place(user.pk):
            await self._send_json({"type": "error", "message": (
                f"同时打开的终端太多（最多 {settings.LAB_USER_WEBSOCKET_LIMIT} 个），请关闭一些标签页。"
                f"Too many terminals open at once (at most {settings.LAB_USER_WEBSOCKET_LIMIT}): close some tabs.")})
            await self.close(code=CLOSE_TOO_MANY)
            return
        if not await self._prepare(session):
            return
        tabs = sorted(int(n) for n, v in (await self.redis.hgetall(tabs_key(self.sid))).items() if v.isdigit())
        await self._send_json({"type": "hello", "session": self.sid, "state": self.state, "replay": since is None,
                               "message": session.message, "readonly": self.read_only, "tabs": tabs})
        self.reader = asyncio.create_task(self._pump_output(since or "0-0", replay=since is None))
        if self.read_only:
            # Someone allowed to watch (an instructor, staff) opened this terminal: the
            # trainee's page says who, for as long as they watch.
            await self._watching(await database_sync_to_async(display_name)(user))
        else:
            await self._send_json(await self._watched_event())

    async def _take_place(self, user_id: int) -> bool:
        """Count this connection against its user's WebSocket limit; False if over it."""
        self.ws_key = f"lab:ws:user:{user_id}"
        now = time.time()
        async with self.redis.pipeline(transaction=True) as p:
            p.zremrangebyscore(self.ws_key, 0, now - WS_TTL)
            p.zadd(self.ws_key, {self.channel_name: now})
            p.zcard(self.ws_key)
            p.expire(self.ws_key, WS_TTL * 2)
            count = (await p.execute())[2]
        if count > settings.LAB_USER_WEBSOCKET_LIMIT:
            await self.redis.zrem(self.ws_key, self.channel_name)
            self.ws_key = ""
            return False
        return True

    async def _refresh_place(self) -> None:
        if self.ws_key:
            await self.redis.zadd(self.ws_key, {self.channel_name: time.time()}, xx=True)
            await self.redis.expire(self.ws_key, WS_TTL * 2)

    async def disconnect(self, code: int) -> None:
        if self.reader:
            self.reader.cancel()
        if self.inside:
            self.inside.cancel()
        if self.redis is not None:
            if self.ws_key:
                await self.redis.zrem(self.ws_key, self.channel_name)
            if self.read_only:
                await self._watching(None)
            await self.channel_layer.group_discard(session_group(self.sid), self.channel_name)
            await self.redis.aclose()

    async def _watched_event(self) -> dict:
        """{"type": "watched", "watchers": [names]}: who is watching this terminal now."""
        names = sorted({n.decode() for n in await self.redis.hvals(watchers_key(self.sid))})
        return {"type": "watched", "watchers": names}

    async def _watching(self, name: str | None) -> None:
        """A read-only viewer arrives (name) or leaves (None): the trainee's page is told."""
        key = watchers_key(self.sid)
        try:
            if name is None:
                await self.redis.hdel(key, self.channel_name)
            else:
                await self.redis.hset(key, self.channel_name, name)
                await self.redis.expire(key, WATCHERS_TTL)
            await self.channel_layer.group_send(session_group(self.sid),
                                                {"type": "session.event", "event": await self._watched_event()})
        except Exception as exc:  # telling the trainee is best effort; watching goes on
            log.warning("could not announce a watcher of %s: %s", self.sid, exc)

    async def _send_json(self, data: dict) -> None:
        await self.send(text_data=json.dumps(data, ensure_ascii=False))

    async def _send_entries(self, entries: list) -> str:
        """Coalesce stream entries into binary frames, then say where they end."""
        chunk = bytearray()
        for _, fields in entries:
            chunk += fields[b"d"]
            if len(chunk) >= MAX_FRAME:
                await self.send(bytes_data=bytes(chunk))
                chunk.clear()
        if chunk:
            await self.send(bytes_data=bytes(chunk))
        last = entries[-1][0].decode()
        self.sent_total += sum(len(f[b"d"]) for _, f in entries)
        self.sent_log.append((_id(last), self.sent_total))
        await self._send_json({"type": "pos", "id": last})
        return last

    async def _tail(self, key: str) -> list:
        """The newest entries of the stream holding at most REPLAY_BYTES (a fresh page)."""
        tail, size = [], 0
        for entry in await self.redis.xrevrange(key, max="+", min="-", count=4096):
            size += len(entry[1][b"d"])
            if size > streams.REPLAY_BYTES and tail:
                break
            tail.append(entry)
        return tail[::-1]

    async def _pump_output(self, last: str, *, replay: bool) -> None:
        key = streams.out_key(self.term_id)
        try:
            if replay:
                entries = await self._tail(key)
                if entries:
                    last = await self._send_entries(entries)
                await self._send_json({"type": "live"})
            refreshed = asyncio.get_running_loop().time()
            while True:
                if asyncio.get_running_loop().time() - refreshed > WS_TTL / 3:
                    await self._refresh_place()
                    refreshed = asyncio.get_running_loop().time()
                resp = await self.redis.xread({key: last}, block=HOST_CHECK_MS, count=256)
                for _, entries in resp or []:
                    last = await self._send_entries(entries)
                if not resp and not await self.redis.exists(streams.host_key(self.host)):
                    # Quiet terminal whose host stopped beating: mark the session
                    # failed or lost (the change reaches the page through the channel layer).
                    await database_sync_to_async(session_verify_host)(sid=self.sid)
                elif not resp and self.state == Session.State.STARTING:
                    # A start no worker takes (its worker is down) ends, said so, in bounded time.
                    await database_sync_to_async(session_verify_start)(sid=self.sid)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis went away: the browser reconnects and resumes
            log.warning("output pump of %s stopped: %s", self.sid, exc)
            await self.close(code=1011)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.redis is None:
            return
        if bytes_data is not None:
            if self.read_only:
                # Read-only on the server, whatever the page shows: a viewer's
                # keystrokes never reach the sandbox.
                await self._send_json({"type": "error", "message": "read-only: input is not sent to this terminal"})
                return
            await self._input({"d": bytes_data[:INPUT_MAX]})
            return
        try:
            msg = json.loads(text_data or "")
            kind = msg.get("type")
            if kind == "resize" and not self.read_only:
                cols, rows = int(msg["cols"]), int(msg["rows"])
                if 0 < cols <= 1000 and 0 < rows <= 500:
                    await self._input({"r": f"{cols} {rows}"})
            elif kind == "ack" and STREAM_ID.match(str(msg.get("id", ""))):
                await self._ack(msg["id"])
            elif kind in ("inside.subscribe", "inside.unsubscribe"):
                self._inside(msg.get("views") if kind == "inside.subscribe" else None)
        except (ValueError, KeyError, TypeError, AttributeError):
            await self._send_json({"type": "error", "message": "malformed control message"})

    async def _input(self, fields: dict) -> None:
        """Append to the session's input stream while it exists (the relay makes it when
        the sandbox starts, the session's end deletes it): never to an ended session."""
        key = streams.in_key(self.term_id)
        added = await self.redis.xadd(key, fields, maxlen=streams.INPUT_MAXLEN, approximate=True, nomkstream=True)
        if added is not None or self.input_refused:
            return
        # No stream: the session ended, or Redis restarted and lost it. Ask the database,
        # at most once a second, and make it again only for a session still running.
        now = time.monotonic()
        if now - self.state_checked >= 1.0:
            self.state_checked = now
            state = await database_sync_to_async(
                lambda: Session.objects.filter(id=self.sid).values_list("state", flat=True).first())()
            if state == Session.State.READY:
                await self.redis.xadd(key, fields, maxlen=streams.INPUT_MAXLEN, approximate=True)
                return
            if state in Session.LIVE_STATES:
                return  # starting: the relay makes the stream when the shell is there
        else:
            return
        if "d" not in fields:
            return  # a resize or an ack after the end: nothing the trainee needs to hear about
        self.input_refused = True
        await self._send_json({"type": "error", "message": "终端不接受输入：会话没有在运行。The terminal takes no input: the session is not running."})

    def _inside(self, views: object) -> None:
        """(Un)subscribe this socket to the inside views of its sandbox (watchers too)."""
        if self.inside:
            self.inside.cancel()
            self.inside = None
        if isinstance(views, list) and (wanted := [v for v in VIEWS if v in views]):
            self.inside = asyncio.create_task(inside_feed(
                sid=self.sid, host=self.host, views=wanted, send=self._send_json,
                ready=lambda: self.state == Session.State.READY))

    async def _ack(self, entry_id: str) -> None:
        """Pass the page's acknowledgement on to the relay, once per ACK_STEP bytes:
        the relay only needs to know the page is within its window, not every frame."""
        acked = None
        while self.sent_log and self.sent_log[0][0] <= _id(entry_id):
            acked = self.sent_log.popleft()[1]
        if acked is not None and acked - self.acked_forwarded >= ACK_STEP:
            self.acked_forwarded = acked
            await self._input({"a": entry_id})

    async def session_event(self, message: dict) -> None:
        """A control event from the channel layer (state change, check result)."""
        if message["event"].get("type") == "state":
            self.state = message["event"].get("state", self.state)
        await self._send_json(message["event"])
