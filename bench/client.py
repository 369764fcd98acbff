"""What a browser does, without a browser: the login form, the JSON API with the CSRF
header, and the terminal WebSocket (binary bytes, JSON control, acks after `pos`)."""
from __future__ import annotations

import http.client
import json
import re
import secrets
import time
import urllib.parse
from http.cookies import SimpleCookie

from websockets.sync.client import connect

from bench.env import PASSWORD

CSRF_INPUT = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


class Browser:
    """Cookies and one keep-alive HTTP connection to the site (one per thread)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.netloc = urllib.parse.urlsplit(base).netloc
        self.cookies: dict[str, str] = {}
        self.conn = http.client.HTTPConnection(self.netloc, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        """One request; remembers Set-Cookie; reconnects once if the server closed."""
        hdrs = {"Host": self.netloc, **(headers or {})}
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.netloc, timeout=60)
                if attempt:
                    raise
        for header in resp.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return resp.status, data

    def login(self, username: str, password: str = PASSWORD) -> None:
        """POST the real login form (csrf token from the page)."""
        status, page = self.request("GET", "/accounts/login/")
        match = CSRF_INPUT.search(page)
        if status != 200 or not match:
            raise RuntimeError(f"login page: HTTP {status}")
        form = urllib.parse.urlencode({"username": username, "password": password,
                                       "csrfmiddlewaretoken": match.group(1).decode(), "next": "/"}).encode()
        status, _ = self.request("POST", "/accounts/login/", form, {
            "Content-Type": "application/x-www-form-urlencoded", "Referer": self.base + "/accounts/login/"})
        if status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"login as {username} failed: HTTP {status}")

    def adopt_session(self, session_key: str) -> None:
        """Use an existing Django session (made by force_login) and a CSRF cookie of our own."""
        self.cookies["sessionid"] = session_key
        self.cookies.setdefault("csrftoken", secrets.token_hex(16))

    def api(self, method: str, path: str, data: dict | None = None) -> tuple[int, dict]:
        """A JSON API call as lab.js makes it (X-CSRFToken from the cookie)."""
        headers = {"Content-Type": "application/json", "X-CSRFToken": self.cookies.get("csrftoken", "")}
        body = json.dumps(data).encode() if data is not None else None
        status, raw = self.request(method, path, body, headers)
        return status, (json.loads(raw) if raw else {})

    def start(self, lab: str = "smoke") -> dict:
        """POST /api/sessions/."""
        status, data = self.api("POST", "/api/sessions/", {"lab": lab})
        if status not in (200, 201):
            raise RuntimeError(f"start: HTTP {status} {data}")
        return data

    def stop(self, sid: str, *, wait: bool = True, timeout: float = 60) -> None:
        """DELETE the session and (optionally) wait until it is stopped."""
        self.api("DELETE", f"/api/sessions/{sid}/")
        deadline = time.monotonic() + timeout
        while wait and time.monotonic() < deadline:
            if self.api("GET", f"/api/sessions/{sid}/")[1].get("state") in ("stopped", "failed", "lost"):
                return
            time.sleep(0.02)
        if wait:
            raise TimeoutError(f"session {sid} did not stop")

    def terminal(self, ws_path: str, since: str | None = None) -> "Terminal":
        """Open the session's terminal WebSocket with the cookie and Origin a browser sends."""
        url = self.base.replace("http", "ws", 1) + ws_path + (f"?since={since}" if since else "")
        ws = connect(url, additional_headers={"Cookie": f"sessionid={self.cookies['sessionid']}"},
                     origin=self.base, open_timeout=10, max_size=None, compression=None)
        return Terminal(ws)

    def close(self) -> None:
        self.conn.close()


class Terminal:
    """A terminal WebSocket client that acks every `pos`, as terminal.js does."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.out = bytearray()
        self.frames = 0
        self.control: list[dict] = []
        self.ack = True

    def send(self, data: bytes | str) -> None:
        """Keystrokes as a binary frame."""
        self.ws.send(data.encode() if isinstance(data, str) else data)

    def recv_once(self, timeout: float) -> bytes | None:
        """Take one message; return its bytes if binary (acks `pos` messages)."""
        msg = self.ws.recv(timeout=timeout)
        if isinstance(msg, bytes):
            self.out += msg
            self.frames += 1
            return msg
        ctl = json.loads(msg)
        if ctl.get("type") == "pos":
            if self.ack:
                self.ws.send(json.dumps({"type": "ack", "id": ctl["id"]}))
        else:
            self.control.append(ctl)
            if ctl.get("type") == "state" and ctl.get("state") in ("failed", "lost", "stopped"):
                raise RuntimeError(f"session {ctl['state']}: {ctl.get('message')}")
        return None

    def expect(self, needle: bytes, *, timeout: float = 20, start: int = 0) -> int:
        """Read until needle appears in the output at or after `start`; its end offset."""
        deadline = time.monotonic() + timeout
        while (i := self.out.find(needle, start)) < 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{needle!r} not seen; got {bytes(self.out[-300:])!r}")
            try:
                self.recv_once(left)
            except TimeoutError:
                continue
        return i + len(needle)

    def expect_tail(self, suffix: bytes, *, timeout: float = 20) -> None:
        """Read until the output so far ends with suffix (a prompt after a flood)."""
        deadline = time.monotonic() + timeout
        while not self.out.endswith(suffix):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"output does not end with {suffix!r}: {bytes(self.out[-300:])!r}")
            try:
                self.recv_once(left)
            except TimeoutError:
                continue

    def close(self) -> None:
        self.ws.close()
