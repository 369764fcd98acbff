"""Browser fixtures: Debian's chromium driven by Playwright's sync API.

Playwright, the browser and the context are started per test, after the database
fixtures and torn down before them: while the sync API is running it marks the main
thread as inside an event loop, and Django's ORM (creating users, flushing the
transactional test DB) refuses to run there.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PASSWORD = "pw-for-tests-123"

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium (/usr/bin/chromium) is not installed; `./lab test` installs it"
)


@pytest.fixture
def browser_context(tmp_path) -> Iterator:
    """A fresh chromium and context (1280x800); stops the user's sandboxes at the end."""
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            try:
                stop_all_sessions(context)
            finally:
                context.close()
                browser.close()


@pytest.fixture
def page(browser_context):
    return browser_context.new_page()


@pytest.fixture
def trainee(make_user):
    """A signed-up user: (name, password)."""
    make_user("trainee", PASSWORD)
    return "trainee", PASSWORD


def log_in(page, web: str, user: tuple[str, str], next_path: str = "/") -> None:
    """Sign in through the real login form and land on next_path."""
    name, password = user
    page.goto(f"{web}/accounts/login/?next={next_path}")
    page.get_by_test_id("login-username").fill(name)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()
    page.wait_for_url(re.compile(re.escape(web + next_path) + r"$"))


def csrf_headers(context) -> dict:
    token = next((c["value"] for c in context.cookies() if c["name"] == "csrftoken"), "")
    return {"X-CSRFToken": token, "Accept": "application/json"}


def stop_all_sessions(context) -> None:
    """DELETE every live session of the signed-in user and wait until none is live."""
    from tests.conftest import wait_for

    if not context.pages:
        return
    page = context.pages[0]
    base = re.match(r"https?://[^/]+", page.url)
    if not base:
        return
    api = base.group(0) + "/api/sessions/"
    live = page.request.get(api)
    if not live.ok:
        return  # not signed in: nothing of ours can be running
    for session in live.json():
        page.request.delete(f"{api}{session['id']}/", headers=csrf_headers(context))
    wait_for(lambda: page.request.get(api).json() == [], timeout=30, what="no live session left", interval=0.1)
