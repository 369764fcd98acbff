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


def watch_page(page) -> tuple[list[str], list[str]]:
    """(errors, websocket URLs) of the page from now on: console errors and uncaught ones."""
    errors: list[str] = []
    sockets: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("websocket", lambda ws: sockets.append(ws.url))
    return errors, sockets


def test_plus_opens_a_tab_after_a_passed_check_and_its_checkpoint(worker, web, builtin_labs, trainee, open_browser):
    """A pressed Check that passes (its result over the terminal socket, then an
    automatic checkpoint that freezes the sandbox for a moment) leaves + working."""
    from playwright.sync_api import expect

    page = open_browser(DESKTOP, 1, "en-US")
    errors, sockets = watch_page(page)
    start(page, web, trainee)
    run(page, "mkdir -p /root/answers; uname -r > /root/answers/kernel; echo written-$((1+1))")
    from tests.e2e.test_browser import wait_for_line

    wait_for_line(page, r"^written-2$")
    page.get_by_test_id("check-rootfs-without-kernel").click()
    expect(page.get_by_test_id("result-rootfs-without-kernel")).to_have_attribute("data-passed", "true", timeout=30_000)
    expect(page.get_by_test_id("state-badge")).to_have_attribute("data-state", "ready")
    add = page.get_by_test_id("term-tab-add")
    expect(add).to_be_enabled()
    # The focus is outside the terminal now (on the Check button): the press on + that
    # brings it in must not move the tab bar under the pointer (the hint appearing above
    # it did, and the click went nowhere).
    y_outside = add.bounding_box()["y"]
    add.click()
    expect(page.get_by_test_id("term-tab-1")).to_be_visible(timeout=10_000)
    page.wait_for_function("() => window.labTabs.terminals()[1] && window.labTabs.terminals()[1].live === true")
    assert any("/tabs/1/" in url for url in sockets), sockets
    assert add.bounding_box()["y"] == y_outside
    wait_for_tab_line(page, 1, r"[#$]$")
    # Later too, once the checkpoint has been taken and the sandbox thawed, the focus
    # outside the terminal again.
    page.get_by_test_id("check-rootfs-without-kernel").focus()
    page.wait_for_timeout(6000)
    assert page.evaluate("() => !document.getElementById('workbench').contains(document.activeElement)")
    add.click()
    expect(page.get_by_test_id("term-tab-2")).to_be_visible(timeout=10_000)
    page.wait_for_function("() => window.labTabs.terminals()[2] && window.labTabs.terminals()[2].live === true")
    assert errors == []


FITS = r"""(n) => {
  const t = n === 0 ? window.labTerminal : window.labTabs.terminals()[n];
  if (!t || t.container.hidden || !t.container.offsetHeight) return null;
  const want = t.fit.proposeDimensions();
  return want && want.rows === t.term.rows && want.cols === t.term.cols ? [t.term.rows, t.term.cols] : null;
}"""


def fitted_size(page, n: int) -> tuple[int, int]:
    """Tab n's xterm geometry once it fills its visible box (rows, cols): what its shell must have."""
    try:
        return tuple(page.wait_for_function(FITS, arg=n, timeout=10_000).json_value())
    except Exception:
        raise AssertionError(page.evaluate("""(n) => {
          const t = n === 0 ? window.labTerminal : window.labTabs.terminals()[n];
          return {xterm: [t.term.rows, t.term.cols], box: t.fit.proposeDimensions(), hidden: t.container.hidden,
                  height: t.container.offsetHeight};
        }""", n)) from None


def settled_size(page, n: int) -> tuple[int, int]:
    """fitted_size() once the layout has stopped changing (a panel filling in, say)."""
    size = fitted_size(page, n)
    for _ in range(40):
        page.wait_for_timeout(300)
        again = fitted_size(page, n)
        if again == size:
            return size
        size = again
    raise AssertionError(f"terminal {n} never settled: {size}")


def shell_size(page, n: int, tag: str) -> tuple[int, int]:
    """(rows, cols) as tab n's shell sees them (stty size), typed into its terminal."""
    page.keyboard.type(f"echo {tag}:$(stty size | tr ' ' x):")
    page.keyboard.press("Enter")
    m = wait_for_tab_line(page, n, rf"^{tag}:(\d+)x(\d+):$")
    return int(m.group(1)), int(m.group(2))


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1440", "390"])
def test_a_tab_fresh_restored_or_switched_to_fills_its_box_and_its_shell_knows_it(
        worker, web, builtin_labs, trainee, open_browser, viewport):
    from playwright.sync_api import expect

    page = open_browser(viewport, 1, "en-US")
    errors, sockets = watch_page(page)
    start(page, web, trainee)
    main_size = fitted_size(page, 0)
    # The focus leaving the terminal for the steps, and coming back, changes no terminal's
    # box (the hint above the tab bar used to appear and go, and every shell had its
    # rows changed with it).
    page.locator("details.step summary").first.click()
    assert page.evaluate("() => !document.getElementById('workbench').contains(document.activeElement)")
    assert fitted_size(page, 0) == main_size
    # Born while the inside panel takes room: a smaller box, which it leaves later.
    page.get_by_test_id("inside-toggle").click()
    small = settled_size(page, 0)
    assert small[0] < main_size[0]
    page.get_by_test_id("term-tab-add").click()
    page.wait_for_function("() => window.labTabs.terminals()[1] && window.labTabs.terminals()[1].live === true")
    assert settled_size(page, 1) == small
    assert shell_size(page, 1, "small") == small
    page.get_by_test_id("term-tab-0").click()
    page.get_by_test_id("inside-toggle").click()  # the room comes back while tab 1 is hidden
    assert settled_size(page, 0) == main_size
    page.get_by_test_id("term-tab-close-1").click()
    expect(page.get_by_test_id("term-tab-1")).to_have_count(0, timeout=20_000)
    page.get_by_test_id("term-tab-add").click()
    page.wait_for_function("() => window.labTabs.terminals()[1] && window.labTabs.terminals()[1].live === true")
    wait_for_tab_line(page, 1, r"[#$]$")
    page.wait_for_function(FOCUSED, arg=1)
    size = fitted_size(page, 1)
    assert size == main_size  # the same box as the first terminal's
    assert shell_size(page, 1, "fresh") == size
    opened = [url for url in sockets if "/tabs/1/" in url]
    assert len(opened) == 2 and opened[1].endswith(f"?cols={size[1]}&rows={size[0]}"), opened  # born with it

    for round in ("reload", "again"):
        page.reload()
        expect(page.get_by_test_id("term-tab-1")).to_be_visible(timeout=20_000)
        page.wait_for_function("() => window.labTabs.terminals()[1] && window.labTabs.terminals()[1].live === true")
        page.get_by_test_id("term-tab-1").click()
        page.wait_for_function(FOCUSED, arg=1)
        size = fitted_size(page, 1)
        assert size == fitted_size(page, 1) and size[0] >= main_size[0] - 1, (size, main_size)
        assert shell_size(page, 1, round) == size
        # Away to the first terminal and back: still its box, still told.
        page.get_by_test_id("term-tab-0").click()
        expect(page.get_by_test_id("terminal")).to_be_visible()
        assert fitted_size(page, 0) == size
        page.get_by_test_id("term-tab-1").click()
        page.wait_for_function(FOCUSED, arg=1)
        assert shell_size(page, 1, round + "-back") == fitted_size(page, 1)
    assert errors == []
