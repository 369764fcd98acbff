"""Phones and small windows (issue 15, item 7) and the colour theme (item 8), in a real
browser at 390x844 (and its landscape, 844x390) and at 1440x900, at 1x and 2x."""
from __future__ import annotations

import pytest

from tests.e2e.conftest import PASSWORD, log_in, needs_chromium
from tests.e2e.test_accessibility import cohort  # noqa: F401  (a fixture)
from tests.e2e.test_trainee_terminal import DESKTOP, PHONE, open_browser, shot  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.django_db(transaction=True)]

LANDSCAPE = {"width": 844, "height": 390}
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth, wide = [];
  for (const el of document.querySelectorAll('body *')) {
    const box = el.getBoundingClientRect();
    if (box.width && box.right > width + 1 && getComputedStyle(el).position !== 'fixed') {
      // Inside a box that scrolls sideways on its own (a table, a code block) is fine.
      let p = el.parentElement, scrolls = false;
      while (p && p !== document.body) { const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll' || o === 'hidden') { scrolls = true; break; } p = p.parentElement; }
      if (!scrolls) wide.push(el.tagName.toLowerCase() + '.' + el.className + ' ' + Math.round(box.right));
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, width, wide: wide.slice(0, 8)};
}"""


def assert_no_sideways_scroll(page, name: str) -> None:
    found = page.evaluate(OVERFLOW_JS)
    assert found["scrollWidth"] <= found["width"] and not found["wide"], (name, found)


@pytest.mark.parametrize("scale", [1, 2], ids=["1x", "2x"])
@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
def test_at_390_px_no_page_scrolls_sideways_and_the_header_is_a_menu(web, cohort, open_browser, scale, locale):
    from playwright.sync_api import expect

    page = open_browser(PHONE, scale, locale)
    page.goto(web + "/")  # signed out: the landing page
    assert_no_sideways_scroll(page, "landing")
    shot(page, f"phone-landing-{locale}-{scale}x", full_page=True)
    page.goto(web + "/accounts/login/")
    assert_no_sideways_scroll(page, "login")
    shot(page, f"phone-login-{locale}-{scale}x", full_page=True)
    log_in(page, web, ("trainee", PASSWORD), "/")

    # The header is one line with a menu button; the links appear when it is opened.
    header = page.locator(".site-header")
    assert header.bounding_box()["height"] <= 60, header.bounding_box()
    menu = page.get_by_test_id("menu-toggle")
    expect(menu).to_be_visible()
    expect(page.locator(".site-nav")).to_be_hidden()
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(page.locator(".site-nav .nav-link").first).to_be_visible()
    expect(page.get_by_test_id("theme-toggle")).to_be_visible()
    shot(page, f"phone-menu-{locale}-{scale}x")
    page.keyboard.press("Escape")
    expect(page.locator(".site-nav")).to_be_hidden()
    assert_no_sideways_scroll(page, "catalogue")
    shot(page, f"phone-catalogue-{locale}-{scale}x", full_page=True)

    page.goto(web + "/labs/first-container/")
    page.wait_for_function("() => window.labTerminal !== undefined")
    assert_no_sideways_scroll(page, "lab")
    # Stacked: the lesson first, then a terminal as wide as the screen.
    steps, bench = page.locator(".lab-steps").bounding_box(), page.locator(".lab-workbench").bounding_box()
    assert bench["y"] >= steps["y"] + steps["height"] - 1 and bench["width"] >= PHONE["width"] - 2, (steps, bench)
    # The steps fold away (the terminal comes up), and unfold; a link jumps to the terminal.
    toggle = page.get_by_test_id("steps-toggle")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(page.locator("#step-list")).to_be_hidden()
    assert page.locator(".lab-workbench").bounding_box()["y"] < bench["y"] - 200
    shot(page, f"phone-steps-folded-{locale}-{scale}x")
    toggle.click()
    expect(page.locator("#step-list")).to_be_visible()
    page.get_by_test_id("jump-terminal").click()
    expect(page.locator(".lab-workbench")).to_be_in_viewport()
    page.locator(".lab-workbench").scroll_into_view_if_needed()
    cols = page.evaluate("() => window.__labTerm.cols")
    assert cols >= 40, cols
    shot(page, f"phone-lab-{locale}-{scale}x")
    shot(page, f"phone-lab-full-{locale}-{scale}x", full_page=True)

    teacher = open_browser(PHONE, scale, locale)
    log_in(teacher, web, ("teacher", PASSWORD), f"/cohorts/{cohort.id}/")
    assert_no_sideways_scroll(teacher, "dashboard")
    shot(teacher, f"phone-dashboard-{locale}-{scale}x", full_page=True)


@pytest.mark.parametrize("scale", [1, 2], ids=["1x", "2x"])
def test_a_phone_in_landscape_has_a_terminal_of_at_least_40_columns(web, builtin_labs, trainee, open_browser, scale):
    page = open_browser(LANDSCAPE, scale, "en-US")
    log_in(page, web, trainee, "/labs/first-container/")
    page.wait_for_function("() => window.labTerminal !== undefined")
    assert_no_sideways_scroll(page, "lab landscape")
    page.locator(".lab-workbench").scroll_into_view_if_needed()
    page.wait_for_function("() => window.__labTerm.cols >= 40 && window.__labTerm.rows >= 8", timeout=5_000)
    shot(page, f"landscape-lab-{scale}x")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1440", "390"])
def test_dark_mode_follows_the_system_and_the_toggle_is_remembered(web, builtin_labs, trainee, open_browser, viewport):
    from playwright.sync_api import expect

    background = "() => getComputedStyle(document.body).backgroundColor"
    page = open_browser(viewport, 1, "zh-CN", color_scheme="dark")
    log_in(page, web, trainee, "/labs/first-container/")
    assert page.evaluate(background) == "rgb(14, 19, 26)"  # the system says dark
    assert page.evaluate("() => window.__labTerm.options.theme.background") == "#0f1720"
    if viewport is PHONE:
        page.get_by_test_id("menu-toggle").click()
    toggle = page.get_by_test_id("theme-toggle")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    toggle.click()  # the trainee prefers light, whatever the system says
    expect(toggle).to_have_attribute("aria-pressed", "false")
    assert page.evaluate(background) == "rgb(244, 246, 249)"
    # The terminal follows the page: light colours, no reload.
    assert page.evaluate("() => window.__labTerm.options.theme.background") == "#fbfcfd"
    shot(page, f"theme-light-chosen-{viewport['width']}")
    page.reload()
    assert page.evaluate(background) == "rgb(244, 246, 249)"  # remembered
    page.goto(web + "/")
    assert page.evaluate(background) == "rgb(244, 246, 249)"  # on every page
    page.emulate_media(color_scheme="light")
    if viewport is PHONE:
        page.get_by_test_id("menu-toggle").click()
    page.get_by_test_id("theme-toggle").click()
    assert page.evaluate(background) == "rgb(14, 19, 26)"
    page.evaluate("document.fonts.ready.then(() => true)")
    shot(page, f"theme-dark-chosen-{viewport['width']}")
