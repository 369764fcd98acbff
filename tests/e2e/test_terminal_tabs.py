"""Terminal tabs in a real browser (issue 15 item 5): a second shell into the same
sandbox, opened with + (or the keyboard), typed into, kept over a reload, closed."""
from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import needs_chromium
from tests.e2e.test_browser import run
from tests.e2e.test_trainee_terminal import DESKTOP, PHONE, open_browser, shot, start  # noqa: F401

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.django_db(transaction=True)]

FOCUSED = "(n) => document.activeElement === window.labTabs.terminals()[n].term.textarea"
TAB_LINES = r"""(n) => {
  const term = window.labTabs.terminals()[n];
  if (!term) return [];
  const buffer = term.term.buffer.active, lines = [];
  for (let i = 0; i < buffer.length; i++) {
    const line = buffer.getLine(i);
    if (line) lines.push(line.translateToString(true).replace(/\s+$/, ""));
  }
  return lines;
}"""


def tab_screen(page, n: int) -> list[str]:
    return page.evaluate(TAB_LINES, n)


def wait_for_tab_line(page, n: int, pattern: str, timeout: float = 20) -> re.Match:
    """Wait until a line of tab n's screen matches the (Python) regex pattern."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in tab_screen(page, n):
            if m := re.search(pattern, line):
                return m
        page.wait_for_timeout(100)
    raise AssertionError(f"tab {n}: no line matches {pattern!r}; screen: {[ln for ln in tab_screen(page, n) if ln]}")


def main_lines(page) -> list[str]:
    from tests.e2e.test_browser import screen

    return screen(page)


@pytest.mark.parametrize("viewport,locale", [(DESKTOP, "en-US"), (PHONE, "zh-CN")], ids=["1440-en", "390-zh"])
def test_a_tab_opens_a_second_shell_in_the_same_sandbox_and_comes_back_after_a_reload(
        worker, web, builtin_labs, trainee, open_browser, viewport, locale):
    from playwright.sync_api import expect

    page = open_browser(viewport, 1, locale, bypass_csp=True)  # for axe-core, injected below
    start(page, web, trainee)
    bar = page.get_by_test_id("term-tabs")
    expect(bar).to_be_visible()
    expect(page.get_by_test_id("term-tab-0")).to_have_text("Terminal 1" if locale == "en-US" else "终端 1")
    run(page, "echo main:$$:$(hostname):")
    page.get_by_test_id("term-tab-add").click()
    tab = page.get_by_test_id("terminal-tab-1")
    expect(tab).to_be_visible()
    expect(page.get_by_test_id("terminal")).to_be_hidden()
    expect(page.get_by_test_id("term-tab-1")).to_have_attribute("aria-pressed", "true")
    page.wait_for_function("() => window.labTabs.terminals()[1] && window.labTabs.terminals()[1].live === true")
    wait_for_tab_line(page, 1, r"[#$]$")
    page.wait_for_function(FOCUSED, arg=1)  # the new tab has the keyboard
    page.keyboard.type("echo tab:$$:$(hostname):$(stty size | tr ' ' x):")
    page.keyboard.press("Enter")
    tab_facts = wait_for_tab_line(page, 1, r"^tab:(\d+):([\w-]+):(\d+)x(\d+):$")
    main_facts = next(m for line in main_lines(page) if (m := re.search(r"^main:(\d+):([\w-]+):$", line)))
    assert tab_facts.group(1) != main_facts.group(1)  # another shell…
    assert tab_facts.group(2) == main_facts.group(2)  # …in the same sandbox
    cols = page.evaluate("() => window.labTabs.terminals()[1].term.cols")
    rows = page.evaluate("() => window.labTabs.terminals()[1].term.rows")
    assert (int(tab_facts.group(3)), int(tab_facts.group(4))) == (rows, cols)  # the tab's own geometry
    if viewport is PHONE:
        assert cols >= 40
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    assert not any(line.startswith("tab:") for line in main_lines(page))  # its output is its own
    shot(page, f"terminal-tab-{viewport['width']}-{locale}")
    from tests.e2e.test_accessibility import axe_violations

    assert axe_violations(page) == []  # the tab bar too: roles, names, contrast
    # The keyboard reaches the tab bar too: back to the first terminal with the arrow keys.
    page.get_by_test_id("term-tab-1").focus()
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_test_id("terminal")).to_be_visible()
    expect(page.get_by_test_id("term-tab-0")).to_have_attribute("aria-pressed", "true")

    page.reload()
    expect(page.get_by_test_id("term-tab-1")).to_be_visible(timeout=20_000)
    page.get_by_test_id("term-tab-1").click()
    page.wait_for_function("() => window.labTabs.terminals()[1] && window.labTabs.terminals()[1].live === true")
    wait_for_tab_line(page, 1, rf"^tab:{tab_facts.group(1)}:")  # its output came back with it
    page.wait_for_function(FOCUSED, arg=1)  # clicking a tab gives its terminal the keyboard
    page.keyboard.type("echo again:$$:$(stty size | tr ' ' x):")
    page.keyboard.press("Enter")
    again = wait_for_tab_line(page, 1, rf"^again:{tab_facts.group(1)}:(\d+)x(\d+):$")  # the same shell…
    size = page.evaluate("() => [window.labTabs.terminals()[1].term.rows, window.labTabs.terminals()[1].term.cols]")
    assert [int(again.group(1)), int(again.group(2))] == size  # …with the size the restored tab shows

    page.get_by_test_id("term-tab-close-1").click()
    expect(page.get_by_test_id("term-tab-1")).to_have_count(0, timeout=20_000)
    expect(page.get_by_test_id("terminal")).to_be_visible()


def test_the_tab_bar_keeps_to_four_terminals_and_the_keyboard_opens_and_closes_them(
        worker, web, builtin_labs, trainee, open_browser):
    from playwright.sync_api import expect

    page = open_browser(DESKTOP, 1, "en-US")
    start(page, web, trainee)
    for n in (1, 2, 3):
        page.keyboard.press("Control+Alt+t")
        expect(page.get_by_test_id(f"term-tab-{n}")).to_be_visible()
        page.wait_for_function(f"() => window.labTabs.terminals()[{n}] && window.labTabs.terminals()[{n}].live === true")
    expect(page.get_by_test_id("term-tab-add")).to_be_disabled()
    page.keyboard.press("Control+Alt+t")
    expect(page.get_by_test_id("term-tab-4")).to_have_count(0)
    page.get_by_test_id("term-tab-2").click()
    page.wait_for_function(FOCUSED, arg=2)
    page.keyboard.type("exit")
    page.keyboard.press("Enter")  # the shell's exit closes its tab
    expect(page.get_by_test_id("term-tab-2")).to_have_count(0, timeout=20_000)
    expect(page.get_by_test_id("term-tab-add")).to_be_enabled()
    page.get_by_test_id("term-tab-3").click()
    page.wait_for_function(FOCUSED, arg=3)
    page.keyboard.press("Control+Alt+w")
    expect(page.get_by_test_id("term-tab-3")).to_have_count(0, timeout=20_000)
    assert sorted(page.evaluate("() => Object.keys(window.labTabs.terminals()).map(Number)")) == [1]
