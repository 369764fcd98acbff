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
# Where the tests leave their screenshots for a person to look at (var/ is not part of
# the repo; one directory per checkout, so parallel runs do not overwrite each other).
SHOTS = Path(os.environ.get("LAB_TEST_SHOTS", Path(__file__).resolve().parents[2] / "var" / "test-shots"))


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


WRITE_JS = """(text) => new Promise((done) => {
  document.querySelector('[data-overlay]').hidden = true;  // the renderer alone, not the idle overlay
  window.__labTerm.write(text, () => requestAnimationFrame(() => requestAnimationFrame(done)));
})"""


def cell_box(page, col: int, row: int, width: int = 1, term: str = "__labTerm") -> dict:
    """The CSS-pixel box of `width` cells starting at (col, row) of the terminal's screen
    (`term`: the global holding the xterm, __labTerm on the lab page)."""
    return page.evaluate("""([col, row, width, name]) => {
      const term = window[name], box = term.element.querySelector('.xterm-screen').getBoundingClientRect();
      const w = box.width / term.cols, h = box.height / term.rows;
      return {x: box.left + col * w, y: box.top + row * h, width: w * width, height: h};
    }""", [col, row, width, term])


def lit_rows(page, box: dict, name: str, term: str = "__labTerm") -> list[float]:
    """For each device-pixel row of the box, the share of its pixels drawn in ink: far
    from the terminal's background colour (light text on dark, or dark on light)."""
    from tests.e2e.pixels import png_pixels

    bg = page.evaluate("(name) => window[name].options.theme.background", term)
    br, bgg, bb = (int(bg[i:i + 2], 16) for i in (1, 3, 5))
    path = shot(page, name, clip=box)
    _, _, rows = png_pixels(path.read_bytes())
    return [sum(1 for r, g, b in row if abs(r - br) + abs(g - bgg) + abs(b - bb) > 3 * 90) / len(row) for row in rows]


@pytest.mark.parametrize("scale,scheme", [(1, "light"), (1, "dark"), (2, "light"), (2, "dark")],
                         ids=["1x-light", "1x-dark", "2x-light", "2x-dark"])
def test_an_underscore_is_drawn_as_a_line_at_1x_and_2x(web, builtin_labs, trainee, open_browser, scale, scheme):
    page = open_browser(DESKTOP, scale, color_scheme=scheme)
    log_in(page, web, trainee, LAB)
    page.evaluate("document.fonts.ready.then(() => true)")
    for size in (12, 14, 17, 20):  # the font sizes the trainee can choose
        page.evaluate("(size) => { window.__labTerm.options.fontSize = size; }", size)
        page.evaluate(WRITE_JS, "\x1b[2J\x1b[H__________ diff_id\r\nchain_id\r\n")
        # Ten underscores in a row: one row of device pixels is lit nearly end to end.
        row = lit_rows(page, cell_box(page, 0, 0, 10), f"underscores-{scale}x-{size}px-{scheme}")
        assert max(row) >= 0.8, (size, [round(v, 2) for v in row])
        # The underscore of diff_id (column 15) and of chain_id (column 5): light pixels
        # in the lower part of its cell, where a `_` is, not an empty cell ("diff id").
        for col, line, name in [(15, 0, "diff_id"), (5, 1, "chain_id")]:
            cell = lit_rows(page, cell_box(page, col, line), f"{name}-{scale}x-{size}px-{scheme}")
            assert max(cell[len(cell) // 2:]) >= 0.5, (size, name, [round(v, 2) for v in cell])
        shot(page, f"underscore-page-{scale}x-{size}px-{scheme}",
             clip=cell_box(page, 0, 0, 40) | {"height": cell_box(page, 0, 0)["height"] * 2})


@pytest.fixture
def recorded(builtin_labs, trainee) -> str:
    """A finished session of the trainee's whose recording prints underscores; its id."""
    from django.contrib.auth import get_user_model

    from labs.models import Recording, Session

    user = get_user_model().objects.get(username=trainee[0])
    session = Session.objects.create(user=user, lab=builtin_labs[0], host="gone", state=Session.State.STOPPED)
    cast = '{"version": 2, "width": 80, "height": 24}\n[0.1, "o", "__________ diff_id\\r\\nchain_id\\r\\n"]\n'
    Recording.objects.create(session=session, cast=cast)
    return session.id


@pytest.mark.parametrize("scale,scheme", [(1, "light"), (1, "dark"), (2, "dark")], ids=["1x-light", "1x-dark", "2x-dark"])
def test_the_replay_page_draws_underscores_as_the_lab_page_does(web, recorded, trainee, open_browser, scale, scheme):
    page = open_browser(DESKTOP, scale, color_scheme=scheme)
    log_in(page, web, trainee, f"/sessions/{recorded}/replay/")
    page.wait_for_function("""() => window.__replayTerm && (() => { const b = window.__replayTerm.buffer.active;
      return b.getLine(1) && b.getLine(1).translateToString(true).startsWith('chain_id'); })()""", timeout=20_000)
    page.evaluate("document.fonts.ready.then(() => true)")
    page.evaluate("() => new Promise((done) => window.__replayTerm.write('', () => requestAnimationFrame(() => requestAnimationFrame(done))))")
    # The same options as the lab page's terminal (one module: static/labs/termoptions.js).
    assert page.evaluate("() => window.__replayTerm.options.lineHeight") == 1.2
    row = lit_rows(page, cell_box(page, 0, 0, 10, term="__replayTerm"), f"replay-underscores-{scale}x-{scheme}", term="__replayTerm")
    assert max(row) >= 0.8, [round(v, 2) for v in row]
    for col, line, name in [(15, 0, "diff_id"), (5, 1, "chain_id")]:
        cell = lit_rows(page, cell_box(page, col, line, term="__replayTerm"), f"replay-{name}-{scale}x-{scheme}", term="__replayTerm")
        assert max(cell[len(cell) // 2:]) >= 0.5, (name, [round(v, 2) for v in cell])


def prompt_line(page) -> str:
    """The last non-blank line of the terminal (where the cursor's command line is)."""
    return [line for line in screen(page) if line.strip()][-1]


def wait_prompt_line(page, ending: str) -> None:
    """Wait until the command line being edited ends with `ending` (as drawn by the shell)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("""(ending) => {
          const b = window.__labTerm.buffer.active, lines = [];
          for (let i = 0; i < b.length; i++) { const l = b.getLine(i).translateToString(true).trimEnd(); if (l) lines.push(l); }
          return lines.length && lines[lines.length - 1].endsWith(ending);
        }""", arg=ending, timeout=10_000)
    except PlaywrightTimeout:
        raise AssertionError(f"the command line is {prompt_line(page)!r}, not ending with {ending!r}") from None


@sandboxed
@pytest.mark.parametrize("viewport,scale,locale", [(DESKTOP, 1, "zh-CN"), (PHONE, 2, "en-US")],
                         ids=["1440-1x-zh", "390-2x-en"])
def test_chinese_and_emoji_typed_into_the_shell_can_be_edited_and_recalled(
        worker, web, builtin_labs, trainee, open_browser, viewport, scale, locale):
    page = open_browser(viewport, scale, locale)
    start(page, web, trainee)
    keys = page.keyboard
    page.locator(".xterm-helper-textarea").focus()

    keys.type("echo 你好世界")
    wait_prompt_line(page, "echo 你好世界")  # drawn as typed, not as ????
    keys.press("Backspace")
    keys.press("Backspace")
    wait_prompt_line(page, "echo 你好")  # one Backspace, one whole (double-width) character
    keys.press("ArrowLeft")
    keys.type("X")
    wait_prompt_line(page, "echo 你X好")  # the cursor moved over a whole character
    keys.press("Enter")
    wait_for_line(page, "^你X好$")

    keys.type("echo 🐳ab")
    wait_prompt_line(page, "echo 🐳ab")
    keys.press("ArrowLeft")
    keys.press("ArrowLeft")
    keys.press("Backspace")  # the whale, all four bytes of it
    keys.type("鲸")
    wait_prompt_line(page, "echo 鲸ab")
    keys.press("Enter")
    wait_for_line(page, "^鲸ab$")
    shot(page, f"unicode-typed-{viewport['width']}-{scale}x-{locale}")

    keys.press("ArrowUp")  # history: the last command comes back whole
    wait_prompt_line(page, "echo 鲸ab")
    keys.press("Enter")
    page.wait_for_function("() => { const b = window.__labTerm.buffer.active; let n = 0;"
                           " for (let i = 0; i < b.length; i++) if (b.getLine(i).translateToString(true).trim() === '鲸ab') n++;"
                           " return n === 2; }", timeout=10_000)
    # A Chinese file name round-trips through the shell (busybox's own ls still prints
    # it as ???: docs/learning.md, "Typing Chinese").
    run(page, "touch 镜像层.txt && echo *.txt")
    wait_for_line(page, r"^镜像层\.txt$")


@pytest.mark.parametrize("scale", [1, 2], ids=["1x", "2x"])
def test_font_size_and_the_split_are_adjustable_by_mouse_and_keyboard_and_remembered(
        web, builtin_labs, trainee, open_browser, scale):
    from playwright.sync_api import expect

    page = open_browser(DESKTOP, scale, "en-US")
    log_in(page, web, trainee, LAB)
    page.wait_for_function("() => window.labTerminal !== undefined")
    size = "() => window.__labTerm.options.fontSize"
    cols = "() => window.__labTerm.cols"
    assert page.evaluate(size) == 14
    before = page.evaluate(cols)
    page.get_by_test_id("font-larger").click()
    page.get_by_test_id("font-larger").click()
    expect(page.get_by_test_id("font-size")).to_have_text("16")
    page.wait_for_function(f"() => window.__labTerm.cols < {before}")  # refitted: bigger cells, fewer columns
    page.locator(".xterm-helper-textarea").focus()
    page.keyboard.press("Control+Alt+Minus")
    assert page.evaluate(size) == 15
    expect(page.get_by_role("button", name="Smaller terminal text (Ctrl+Alt+-)")).to_be_visible()

    handle = page.get_by_test_id("split-handle")
    steps_width = "() => document.querySelector('.lab-steps').getBoundingClientRect().width"
    start = page.evaluate(steps_width)
    handle.focus()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    assert handle.get_attribute("aria-valuenow") == "48"
    assert page.evaluate(steps_width) > start + 100
    box = handle.bounding_box()
    page.mouse.move(box["x"] + 4, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(DESKTOP["width"] * 0.30, box["y"] + 220, steps=5)
    page.mouse.up()
    assert 28 <= int(handle.get_attribute("aria-valuenow")) <= 32
    narrow = page.evaluate(steps_width)
    shot(page, f"split-and-font-{scale}x")

    page.reload()  # both remembered
    page.wait_for_function("() => window.labTerminal !== undefined")
    assert page.evaluate(size) == 15
    expect(page.get_by_test_id("font-size")).to_have_text("15")
    assert abs(page.evaluate(steps_width) - narrow) < 2
