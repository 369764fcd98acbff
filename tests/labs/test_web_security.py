"""The web side of the security model: throttled logins, CSRF on the API, Origin and
sign-in on the WebSocket, sanitised lab content."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.test import Client
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import ROOT

pytestmark = [pytest.mark.django_db(transaction=True)]
PASSWORD = "pw-for-tests-123"


def test_login_attempts_are_rate_limited_per_address_and_name(make_user, settings):
    settings.LOGIN_MAX_FAILURES = 3
    make_user("victim")
    c = Client()
    for _ in range(3):
        assert c.post("/accounts/login/", {"username": "victim", "password": "wrong"}).status_code == 200
    blocked = c.post("/accounts/login/", {"username": "victim", "password": PASSWORD})
    assert blocked.status_code == 429  # even the right password waits out the window
    assert b"Too many failed attempts" in blocked.content or "失败".encode() in blocked.content
    make_user("other")
    ok = c.post("/accounts/login/", {"username": "other", "password": PASSWORD})
    assert ok.status_code == 302  # another name from the same address is not locked out


def test_the_api_refuses_writes_without_the_csrf_token(make_user):
    c = Client(enforce_csrf_checks=True)
    c.force_login(make_user())
    assert c.post("/api/sessions/", {"lab": "no-such-lab"}, content_type="application/json").status_code == 403
    c.get("/")  # the page sets the csrftoken cookie
    token = c.cookies["csrftoken"].value
    resp = c.post("/api/sessions/", {"lab": "no-such-lab"}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert resp.status_code == 404  # past CSRF, to the real answer


def test_the_api_requires_sign_in():
    assert Client().get("/api/labs/").status_code == 401


def test_the_websocket_refuses_a_foreign_origin(web, make_user):
    c = Client()
    c.force_login(make_user())
    cookie = f"sessionid={c.cookies['sessionid'].value}"
    with pytest.raises(InvalidStatus) as exc:
        connect(web.replace("http", "ws") + "/ws/terminal/0123456789abcdef/", origin="http://evil.example",
                additional_headers={"Cookie": cookie}, open_timeout=10)
    assert exc.value.response.status_code == 403


def test_the_websocket_closes_4401_without_sign_in(web):
    with connect(web.replace("http", "ws") + "/ws/terminal/0123456789abcdef/", origin=web, open_timeout=10) as ws:
        with pytest.raises(Exception):
            ws.recv(timeout=5)
    assert ws.close_code == 4401


class ActiveContent(HTMLParser):
    """Collects what a browser would run: scripts, frames, on* handlers, javascript: URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "iframe", "object", "embed"):
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"{tag} {name}")
            if value and "javascript:" in value.replace(" ", "").lower():
                self.found.append(f"{tag} {name}={value}")


def active_content(html: str, *, allowed_scripts: set[str] = frozenset()) -> list[str]:
    parser = ActiveContent()
    parser.feed(html)
    return parser.found


def test_hostile_lab_markdown_renders_inert(make_user):
    from labs.labfile import load_lab
    from labs.services import lab_import

    lab_import(spec=load_lab(ROOT / "tests" / "fixtures" / "labs" / "hostile"))
    c = Client()
    c.force_login(make_user())
    for lang in ("en", "zh-hans"):
        data = c.get("/api/labs/hostile/", HTTP_ACCEPT_LANGUAGE=lang).json()
        step_html = data["steps"][0]["html"]
        assert active_content(step_html) == []
        assert "alert(8)" in step_html  # the code block keeps its text, escaped
        page = c.get("/labs/hostile/", HTTP_ACCEPT_LANGUAGE=lang).content.decode()
        # the page's own scripts are external files; nothing the lab wrote is active
        found = [f for f in active_content(page) if f != "<script>"]
        assert found == []
        assert "alert(" not in "".join(re.findall(r"<script[^>]*>(.*?)</script>", page, re.S))


def test_pages_carry_a_content_security_policy_without_inline_scripts(make_user):
    c = Client()
    c.force_login(make_user())
    csp = c.get("/").headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "frame-ancestors 'none'" in csp
