"""The trainee's terminal in a real browser, at 1x and 2x device scale and at a desktop
and a phone size: its geometry, how it draws, what can be typed into it (issue 15)."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, needs_chromium, stop_all_sessions
from tests.e2e.test_browser import LAB, log_in, run, sandboxed, screen, wait_for_line, wait_until_live

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.django_db(transaction=True)]

DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
# Where the tests leave their screenshots for a person to look at (not part of the repo).
SHOTS = Path(os.environ.get("LAB_TEST_SHOTS", "/tmp/lab-test-shots"))


@pytest.fixture
def open_browser() -> Iterator:
    """open_browser(viewport, scale, locale) -> a page in a fresh chromium context."""
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        contexts = []

        def make(viewport: dict = DESKTOP, scale: float = 1, locale: str = "zh-CN", **options):
            context = browser.new_context(viewport=viewport, device_scale_factor=scale, locale=locale, **options)
            context.set_default_timeout(15_000)
            contexts.append(context)
            return context.new_page()

        try:
            yield make
        finally:
            for context in contexts:
                try:
                    stop_all_sessions(context)
                finally:
                    context.close()
            browser.close()


def start(page, web: str, trainee) -> None:
    """Open the lab, press Start and wait for the live prompt (no reload)."""
    from playwright.sync_api import expect

    log_in(page, web, trainee, LAB)
    page.get_by_test_id("start-button").click()
    badge = page.get_by_test_id("state-badge")
    expect(badge).to_have_attribute("data-state", re.compile("ready|failed|lost"), timeout=30_000)
    assert badge.get_attribute("data-state") == "ready", page.get_by_test_id("error-message").text_content()
    wait_until_live(page)


def xterm_size(page) -> tuple[int, int]:
    return tuple(page.evaluate("() => [window.__labTerm.rows, window.__labTerm.cols]"))


def shot(page, name: str, **options) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), **options)
    return path


@sandboxed
@pytest.mark.parametrize("viewport,scale", [(DESKTOP, 1), (DESKTOP, 2), (PHONE, 1), (PHONE, 2)],
                         ids=["1440-1x", "1440-2x", "390-1x", "390-2x"])
def test_the_shell_has_the_pages_geometry_from_the_first_prompt_without_a_reload(
        worker, web, builtin_labs, trainee, open_browser, viewport, scale):
    page = open_browser(viewport, scale)
    start(page, web, trainee)
    rows, cols = xterm_size(page)
    assert cols >= 20 and rows >= 5, (rows, cols)
    run(page, "stty size; echo size-$((1+1))")
    wait_for_line(page, r"^size-2$")
    assert f"{rows} {cols}" in screen(page), (rows, cols, screen(page))
    shot(page, f"geometry-{viewport['width']}-{scale}x")
