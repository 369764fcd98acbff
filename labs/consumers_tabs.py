"""A terminal tab's WebSocket: another shell in the same sandbox (docs/protocol.md, "Tabs").

It is the sandbox terminal's consumer on the tab's own streams (`term:<sid>.<n>:…`):
the same authorisation (the owner types, those allowed to watch read), reconnect,
flow control and watchers. Opening a tab that is not open yet asks the host's relay,
through the sandbox's own input stream, which only the owner may append to; the
number of tabs is capped by their numbering (sandbox/relay/tabs.py), on the server.
"""
from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import parse_qs

from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext as _

from labs.consumers import CLOSE_ENDED, CLOSE_NOT_FOUND, CLOSE_TOO_MANY, TerminalConsumer
from labs.models import Session
from labs.services import session_group
from sandbox.relay import streams
from sandbox.relay.tabs import TAB_MAX, tab_id, tabs_key, valid_tab

log = logging.getLogger(__name__)
OPEN_WAIT_SECONDS = 15.0


def _language(scope: dict) -> str:
    """The page's language: its language cookie, else the browser's Accept-Language."""
    headers = dict(scope.get("headers") or [])
    cookies = scope.get("cookies") or {}
    wanted = [cookies.get(settings.LANGUAGE_COOKIE_NAME, "")]
    wanted += [lang for lang, _q in translation.trans_real.parse_accept_lang_header(
        headers.get(b"accept-language", b"").decode("latin-1"))]
    for lang in wanted:
        try:
            return translation.get_supported_language_variant(lang)
        except LookupError:
            continue
    return settings.LANGUAGE_CODE


def _size(query: dict, name: str, default: int, top: int) -> int:
    try:
        return max(1, min(int((query.get(name) or [default])[0]), top))
    except ValueError:
        return default


class TabConsumer(TerminalConsumer):
    """One view of one terminal tab of a sandbox."""

    term_id = property(lambda self: tab_id(self.sid, self.tab))

    async def _prepare(self, session: Session) -> bool:
        """The tab exists, or the owner opens it now (with the page's geometry)."""
        with translation.override(_language(self.scope)):
            return await self._open(session)

    async def _open(self, session: Session) -> bool:
        self.tab = int(self.scope["url_route"]["kwargs"]["tab"])
        if not valid_tab(self.tab):
            await self._send_json({"type": "error", "message": _(
                "At most %(count)d terminals per sandbox: close a tab first.") % {"count": TAB_MAX}})
            await self.close(code=CLOSE_TOO_MANY)
            return False
        key = tabs_key(self.sid)
        query = parse_qs(self.scope.get("query_string", b"").decode())
        if await self.redis.hget(key, str(self.tab)) is None:
            # Only a fresh open makes a tab: a reconnect (`since`) to one that closed does not.
            if self.read_only or session.state != Session.State.READY or "since" in query:
                await self.close(code=CLOSE_NOT_FOUND if self.read_only else CLOSE_ENDED)
                return False
            cols, rows = _size(query, "cols", 80, 1000), _size(query, "rows", 24, 500)
            added = await self.redis.xadd(streams.in_key(self.sid), {"t": f"{self.tab} {cols} {rows}"},
                                          maxlen=streams.INPUT_MAXLEN, approximate=True, nomkstream=True)
            if added is None:  # the sandbox's input is gone: it is not running
                await self.close(code=CLOSE_ENDED)
                return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + OPEN_WAIT_SECONDS
        while (value := await self.redis.hget(key, str(self.tab))) is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if value is None or not value.isdigit():
            log.warning("tab %s of %s did not open: %s", self.tab, self.sid, value or "no answer from the relay")
            if value is not None:
                await self.redis.hdel(key, str(self.tab))  # "failed": the next try starts afresh
            await self._send_json({"type": "error", "message": _("The terminal tab could not be opened.")})
            await self.close(code=CLOSE_ENDED)
            return False
        await self._announce()
        return True

    async def _announce(self, *, ended: bool = False) -> None:
        """Every viewer of the session hears which tabs are open now ({"type": "tabs"}):
        the trainee's other windows and watchers show a tab opened or closed elsewhere."""
        tabs = sorted(int(n) for n, v in (await self.redis.hgetall(tabs_key(self.sid))).items()
                      if v.isdigit() and not (ended and int(n) == self.tab))
        await self.channel_layer.group_send(session_group(self.sid),
                                            {"type": "session.event", "event": {"type": "tabs", "tabs": tabs}})

    async def _send_entries(self, entries: list) -> str:
        """As the sandbox terminal's, and an end marker (`e`) closes the tab's socket."""
        last = await super()._send_entries(entries)
        if any(b"e" in fields for _id, fields in entries):
            self.ended = True  # nothing more is sent on this socket (see session_event)
            await self._send_json({"type": "tab.closed", "tab": self.tab})
            await self.close(code=CLOSE_ENDED)
            await self._announce(ended=True)
            raise asyncio.CancelledError
        return last

    async def session_event(self, message: dict) -> None:
        """As the sandbox terminal's, until the tab ended and its socket was closed."""
        if not getattr(self, "ended", False):
            await super().session_event(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.redis is not None and text_data and '"tab.close"' in text_data:
            try:
                wanted = json.loads(text_data).get("type") == "tab.close"
            except (ValueError, AttributeError):
                wanted = False
            if wanted:
                if self.read_only:
                    await self._send_json({"type": "error", "message": "read-only: this terminal cannot be closed from here"})
                else:  # the relay hangs the tab's PTY up; the end marker closes this socket
                    await self.redis.xadd(streams.in_key(self.sid), {"x": str(self.tab)},
                                          maxlen=streams.INPUT_MAXLEN, approximate=True, nomkstream=True)
                return
        await super().receive(text_data=text_data, bytes_data=bytes_data)

    async def _input(self, fields: dict) -> None:
        """Append to the tab's input stream while it exists: a closed tab is never made again."""
        await self.redis.xadd(streams.in_key(self.term_id), fields, maxlen=streams.INPUT_MAXLEN,
                              approximate=True, nomkstream=True)

