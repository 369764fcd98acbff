"""What the lab page tells the trainee about their sandbox (issue 15): which limit ends
it first and Extend (item 12), who stopped it or that it was lost, and who is watching
(item 13), Reset's confirmation and its marker in the terminal (item 6)."""
from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import PASSWORD, log_in, needs_chromium
from tests.e2e.test_accessibility import cohort  # noqa: F401  (a fixture)
from tests.e2e.test_browser import sandboxed, screen, wait_for_line, wait_until_live
from tests.e2e.test_trainee_terminal import DESKTOP, PHONE, open_browser, shot, start  # noqa: F401

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.django_db(transaction=True)]
CONTEXTS = [(DESKTOP, 1, "zh-CN"), (PHONE, 2, "en-US")]
IDS = ["1440-1x-zh", "390-2x-en"]


def orm(fn, *args, **kwargs):
    """Run ORM code outside Playwright's event loop (Django refuses it inside)."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def session_id(page, web: str) -> str:
    (session,) = page.request.get(f"{web}/api/sessions/").json()
    return session["id"]


@sandboxed
@pytest.mark.parametrize("viewport,scale,locale", CONTEXTS, ids=IDS)
def test_the_trainee_sees_who_watches_and_that_an_instructor_stopped_the_sandbox(
        worker, web, cohort, open_browser, viewport, scale, locale):
    from playwright.sync_api import expect

    page = open_browser(viewport, scale, locale)
    start(page, web, ("trainee", PASSWORD))
    sid = session_id(page, web)
    badge = page.get_by_test_id("watch-badge")
    expect(badge).to_be_hidden()

    teacher = open_browser(DESKTOP, 1, locale)
    log_in(teacher, web, ("teacher", PASSWORD), f"/cohorts/{cohort.id}/watch/{sid}/")
    expect(badge).to_be_visible(timeout=10_000)
    expect(badge).to_contain_text("teacher")
    shot(page, f"watched-{viewport['width']}-{locale}")
    teacher.goto(web + "/")  # the instructor leaves: the trainee is told at once
    expect(badge).to_be_hidden(timeout=10_000)

    token = next(c["value"] for c in teacher.context.cookies() if c["name"] == "csrftoken")
    resp = teacher.request.post(f"{web}/api/cohorts/{cohort.id}/sessions/{sid}/stop",
                                headers={"X-CSRFToken": token, "Referer": web + "/"})
    assert resp.status == 202, resp.text()
    message = page.get_by_test_id("error-message")
    expect(message).to_have_attribute("data-reason", "instructor", timeout=15_000)
    # Named: the instructor who stopped it (state events carry `who`).
    expect(message).to_contain_text("讲师 teacher" if locale == "zh-CN" else "Your instructor teacher stopped")
    expect(message).not_to_contain_text("Your instructor" if locale == "zh-CN" else "讲师")  # one language
    expect(page.get_by_test_id("state-badge")).to_have_attribute("data-state", "stopped", timeout=30_000)
    expect(message).to_have_attribute("data-reason", "instructor")
    shot(page, f"stopped-by-instructor-{viewport['width']}-{locale}")


@sandboxed
@pytest.mark.parametrize("viewport,scale,locale", CONTEXTS, ids=IDS)
def test_a_sandbox_lost_with_its_host_is_said_in_the_trainees_language(
        worker, web, builtin_labs, trainee, open_browser, viewport, scale, locale):
    from playwright.sync_api import expect

    from labs.services import session_set_state

    page = open_browser(viewport, scale, locale)
    start(page, web, trainee)
    sid = session_id(page, web)
    # What session_verify_host and host_reconcile do when a host stops beating.
    orm(session_set_state, sid=sid, state="lost", message="沙箱已丢失：工作节点已离线。The sandbox was lost: its worker host went offline.",
        only_from=("ready",), reason="lost")
    message = page.get_by_test_id("error-message")
    expect(message).to_have_attribute("data-reason", "lost", timeout=10_000)
    expect(message).to_contain_text("离线" if locale == "zh-CN" else "went offline")
    expect(message).not_to_contain_text("offline" if locale == "zh-CN" else "离线")
    expect(page.get_by_test_id("start-button")).to_be_enabled()


@sandboxed
@pytest.mark.parametrize("viewport,scale,locale", CONTEXTS, ids=IDS)
def test_reset_asks_first_and_marks_where_the_fresh_sandbox_begins(
        worker, web, builtin_labs, trainee, open_browser, viewport, scale, locale):
    from playwright.sync_api import expect

    page = open_browser(viewport, scale, locale)
    start(page, web, trainee)
    page.locator(".xterm-helper-textarea").focus()
    page.keyboard.type("touch /root/mine && echo made-$((1+1))")
    page.keyboard.press("Enter")
    wait_for_line(page, "^made-2$")

    dialog = page.get_by_test_id("reset-dialog")
    page.get_by_test_id("reset-button").click()
    expect(dialog).to_be_visible()
    shot(page, f"reset-dialog-{viewport['width']}-{locale}")
    page.keyboard.press("Escape")  # keeps everything
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("reset-button")).to_be_focused()
    page.get_by_test_id("reset-button").click()
    page.get_by_test_id("reset-cancel").click()
    expect(dialog).to_be_hidden()
    assert page.get_by_test_id("state-badge").get_attribute("data-state") == "ready"
    assert not any("↻" in line for line in screen(page))

    page.get_by_test_id("reset-button").click()
    page.get_by_test_id("reset-confirm").click()
    mark = "已重置" if locale == "zh-CN" else "Reset at"
    wait_for_line(page, "↻.*" + mark, timeout=30)
    expect(page.get_by_test_id("state-badge")).to_have_attribute("data-state", "ready", timeout=30_000)
    wait_until_live(page)
    lines = screen(page)
    marker = max(i for i, line in enumerate(lines) if "↻" in line)
    assert any(re.search(r"@\S+:\S*[#$]", line) for line in lines[marker + 1:]), lines[marker:]  # a new prompt below it
    page.locator(".xterm-helper-textarea").focus()
    page.keyboard.type("test -e /root/mine && echo still || echo gone-$((2+2))")
    page.keyboard.press("Enter")
    wait_for_line(page, "^gone-4$")
    shot(page, f"reset-marker-{viewport['width']}-{locale}")
    page.reload()  # the marker is part of the terminal's output: a reload replays it
    wait_until_live(page)
    wait_for_line(page, "↻.*" + mark)
