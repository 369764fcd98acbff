"""The lab page in a real browser: Debian's chromium (Playwright) against the real ASGI
server, a real Celery worker and real runc sandboxes. Hooks: docs/protocol.md,
"Hooks for browser tests"."""
from __future__ import annotations

import json
import os
import re

import pytest

from tests.conftest import IS_ROOT, ROOT
from tests.e2e.conftest import log_in, needs_chromium

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.django_db(transaction=True)]


def sandboxed(test):
    """Marks a test that starts a real runc sandbox: root only (CI is root)."""
    for mark in (pytest.mark.root, pytest.mark.sandbox, pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root")):
        test = mark(test)
    return test


LAB = "/labs/first-container/"
PROMPT = r"^\S+@\S+:\S*[#$]$"  # images/base/etc/profile: PS1='\u@\h:\w\$ '
SCREENSHOTS = ROOT / "docs" / "screenshots"

READ_LINES = r"""
  const buffer = window.__labTerm.buffer.active, lines = [];
  for (let i = 0; i < buffer.length; i++) {
    const line = buffer.getLine(i);
    if (line) lines.push(line.translateToString(true).replace(/\s+$/, ""));
  }
"""
SCREEN_JS = "() => {" + READ_LINES + "return lines; }"
MATCH_JS = "(re) => {" + READ_LINES + "return lines.some((l) => new RegExp(re).test(l)); }"


def screen(page) -> list[str]:
    """Every line of the xterm buffer (scrollback included), trailing blanks removed."""
    return page.evaluate(SCREEN_JS)


def wait_for_line(page, pattern: str, timeout: float = 15) -> None:
    """Wait until some buffer line matches the regex `pattern` (JavaScript syntax)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(MATCH_JS, arg=pattern, timeout=timeout * 1000)
    except PlaywrightTimeout:
        lines = "\n".join(repr(line) for line in screen(page) if line.strip())
        raise AssertionError(f"no terminal line matches {pattern!r} after {timeout:g} s; screen:\n{lines}") from None


def wait_until_live(page, timeout: float = 15) -> None:
    """The socket is live (input reaches the shell) and the shell has printed its prompt."""
    page.wait_for_function("() => window.labTerminal && window.labTerminal.live === true", timeout=timeout * 1000)
    wait_for_line(page, PROMPT, timeout)


def run(page, command: str) -> None:
    """Type a command into the terminal as a trainee would, then Enter."""
    page.locator(".xterm-helper-textarea").focus()
    page.keyboard.type(command)
    page.keyboard.press("Enter")


def page_data(page) -> dict:
    return json.loads(page.locator("#page-data").text_content())


def live_sessions(page, web: str) -> list[dict]:
    resp = page.request.get(f"{web}/api/sessions/")
    assert resp.ok, resp.text()
    return resp.json()


def start_lab(page, web: str, trainee) -> str:
    """Sign in, open the lab, press Start; returns the session id once it is ready."""
    from playwright.sync_api import expect

    log_in(page, web, trainee, LAB)
    assert page_data(page)["session"] is None
    page.get_by_test_id("start-button").click()
    badge = page.get_by_test_id("state-badge")
    expect(badge).to_have_attribute("data-state", re.compile("ready|failed|lost"), timeout=30_000)
    assert badge.get_attribute("data-state") == "ready", page.get_by_test_id("error-message").text_content()
    wait_until_live(page)
    (session,) = live_sessions(page, web)
    assert session["lab"] == "first-container" and session["state"] == "ready"
    return session["id"]


def test_unauthenticated_visit_to_a_lab_redirects_to_the_login_form(web, page):
    page.goto(web + LAB)
    assert page.url == f"{web}/accounts/login/?next={LAB}"
    assert page.get_by_test_id("login-username").is_visible()
    assert page.get_by_test_id("start-button").count() == 0


@sandboxed
def test_echo_in_the_terminal_and_a_reload_reconnects_to_the_same_sandbox_with_its_output(
        worker, web, builtin_labs, trainee, page):
    session_id = start_lab(page, web, trainee)
    run(page, "echo $((6*7))")
    wait_for_line(page, r"^42$")

    page.reload()
    assert page_data(page)["session"]["id"] == session_id
    wait_until_live(page)
    assert [s["id"] for s in live_sessions(page, web)] == [session_id]
    assert page.get_by_test_id("state-badge").get_attribute("data-state") == "ready"
    lines = screen(page)
    # Replayed once after term.reset(): the command and its answer, no duplicate.
    assert sum(1 for line in lines if line == "42") == 1, "\n".join(lines)
    assert any(line.endswith("echo $((6*7))") for line in lines), "\n".join(lines)

    run(page, "echo $((6*7))-again")
    wait_for_line(page, r"^42-again$")


@sandboxed
def test_check_fails_before_the_task_and_passes_after_typing_the_solution(worker, web, builtin_labs, trainee, page):
    from playwright.sync_api import expect

    start_lab(page, web, trainee)
    result = page.get_by_test_id("result-rootfs-without-kernel")
    page.get_by_test_id("check-rootfs-without-kernel").click()
    expect(result).to_have_attribute("data-passed", "false", timeout=15_000)
    # The page is in Chinese (locale zh-CN): the check speaks Chinese only.
    expect(result).to_contain_text("还没有 /root/answers/kernel")
    expect(result).not_to_contain_text("is missing or empty")

    run(page, "mkdir -p /root/answers; uname -r > /root/answers/kernel; echo written-$((1+1))")
    wait_for_line(page, r"^written-2$")
    page.get_by_test_id("check-rootfs-without-kernel").click()
    expect(result).to_have_attribute("data-passed", "true", timeout=15_000)
    expect(result).to_contain_text("rootfs 里没有内核")
    expect(page.get_by_test_id("step-rootfs-without-kernel")).to_have_class(re.compile(r"\bis-passed\b"))
    expect(page.locator("[data-progress-done]")).to_have_text("1")


@pytest.fixture
def first_step_passed(builtin_labs, trainee):
    """The trainee passed the lab's first step in an earlier visit (set up before the browser starts)."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from labs.models import Step, StepProgress

    step = Step.objects.get(lab__slug="first-container", key="rootfs-without-kernel")
    user = get_user_model().objects.get(username=trainee[0])
    StepProgress.objects.create(user=user, step=step, passed_at=timezone.now(), passed_by="check", attempts=1)
    return trainee


def test_a_step_passed_in_an_earlier_visit_comes_back_marked_passed(web, first_step_passed, page):
    from playwright.sync_api import expect

    log_in(page, web, first_step_passed, LAB)
    expect(page.get_by_test_id("step-rootfs-without-kernel")).to_have_attribute("data-passed", "true", timeout=2_000)
    expect(page.locator("[data-progress-done]")).to_have_text("1")
    expect(page.get_by_test_id("step-image-layers")).to_have_attribute("open", "")


@sandboxed
def test_stop_ends_the_session_in_state_stopped(worker, web, builtin_labs, trainee, page):
    from playwright.sync_api import expect

    session_id = start_lab(page, web, trainee)
    page.get_by_test_id("stop-button").click()
    expect(page.get_by_test_id("state-badge")).to_have_attribute("data-state", "stopped", timeout=30_000)
    expect(page.get_by_test_id("start-button")).to_be_enabled()
    expect(page.get_by_test_id("stop-button")).to_be_disabled()
    assert live_sessions(page, web) == []
    assert page.request.get(f"{web}/api/sessions/{session_id}/").json()["state"] == "stopped"
    page.reload()
    assert page_data(page)["session"] is None


@sandboxed
def test_screenshots_for_the_readme(worker, web, builtin_labs, trainee, page):
    """Writes docs/screenshots/*.png (1280x800) when LAB_SCREENSHOTS=1."""
    from playwright.sync_api import expect

    if os.environ.get("LAB_SCREENSHOTS") != "1":
        pytest.skip("set LAB_SCREENSHOTS=1 to write docs/screenshots/*.png")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    start_lab(page, web, trainee)
    for command, done in [("ls /", r"\bbin\b"), ("uname -r", r"^\d+\.\d+"),
                          ("mkdir -p /root/answers; uname -r > /root/answers/kernel; echo $((6*7))", r"^42$")]:
        run(page, command)
        wait_for_line(page, done)
    page.get_by_test_id("check-rootfs-without-kernel").click()
    expect(page.get_by_test_id("result-rootfs-without-kernel")).to_have_attribute("data-passed", "true")
    expect(page.locator("#step-image-layers")).to_have_attribute("open", "")
    # Passing opens and scrolls to the next step; show the lab from its title instead.
    page.evaluate("""() => document.querySelectorAll('*').forEach((el) => {
      if (el.scrollTop) el.scrollTo({top: 0, behavior: 'instant'});
    })""")
    expect(page.locator(".lab-title")).to_be_in_viewport(ratio=1)
    page.evaluate("document.fonts.ready.then(() => true)")
    page.screenshot(path=str(SCREENSHOTS / "lab-first-container.png"))

    page.goto(web + "/")
    expect(page.get_by_test_id("lab-first-container")).to_be_visible()
    page.evaluate("document.fonts.ready.then(() => true)")
    page.screenshot(path=str(SCREENSHOTS / "catalogue.png"))
    for name in ("lab-first-container.png", "catalogue.png"):
        assert (SCREENSHOTS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"



@pytest.fixture
def lost_session(builtin_labs, trainee):
    """The trainee's last sandbox of the lab was lost with its host a minute ago."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from labs.models import Lab, Session

    return Session.objects.create(
        user=get_user_model().objects.get(username=trainee[0]), lab=Lab.objects.get(slug="first-container"),
        host="gone", state=Session.State.LOST, ended_at=timezone.now(),
        message="沙箱已丢失：工作节点已离线。The sandbox was lost: its worker host went offline.")


def test_a_reload_after_the_sandbox_was_lost_says_so_and_offers_start_again(web, lost_session, trainee, page):
    from playwright.sync_api import expect

    log_in(page, web, trainee, LAB)
    assert page_data(page)["session"] is None
    expect(page.get_by_test_id("state-badge")).to_have_attribute("data-state", "lost")
    expect(page.get_by_test_id("error-message")).to_contain_text("worker host went offline")
    expect(page.get_by_test_id("start-button")).to_be_enabled()


@sandboxed
def test_keys_typed_while_the_web_server_restarts_reach_the_shell_once_it_is_back(worker, web, builtin_labs, trainee, page):
    from tests.conftest import WEB, _start_web

    start_lab(page, web, trainee)
    run(page, "echo before-$((2+3))")
    wait_for_line(page, r"^before-5$")
    port = int(web.rsplit(":", 1)[1])
    WEB[web].terminate()  # the web server goes away: the page's WebSocket drops
    WEB[web].wait(20)
    page.wait_for_function("() => window.labTerminal && !window.labTerminal._isOpen()", timeout=15_000)
    run(page, "echo typed-while-down-$((3+4))")  # typed into a terminal that is reconnecting
    WEB[web] = _start_web(port)
    wait_for_line(page, r"^typed-while-down-7$", timeout=30)
