"""axe-core (vendored, pinned: tests/e2e/vendor/axe-core, refreshed by
scripts/vendor-static.sh) on the pages a trainee and an instructor use, in both
languages and both colour schemes: no serious or critical violation (issue 15, item 9)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import PASSWORD, log_in, needs_chromium
from tests.e2e.test_trainee_terminal import DESKTOP, PHONE, open_browser, shot  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
RUN_AXE = """() => axe.run(document, {resultTypes: ['violations']}).then((r) => r.violations
  .filter((v) => v.impact === 'serious' || v.impact === 'critical')
  .map((v) => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map((n) => n.target.join(' ') + ' :: ' + n.failureSummary)})))"""


def axe_violations(page) -> list[dict]:
    """Serious and critical axe-core violations of the page as it is now."""
    page.evaluate("document.fonts.ready.then(() => true)")
    page.add_script_tag(path=str(AXE))
    return page.evaluate(RUN_AXE)


@pytest.fixture
def cohort(builtin_labs, make_user):
    """An instructor (not staff) with a cohort of first-container that `trainee` joined."""
    from cohorts.services import cohort_create, cohort_join
    from tests.cohorts.conftest import make_instructor

    teacher = make_instructor()
    cohort = cohort_create(owner=teacher, name="容器基础 Container basics", lab_slugs=["first-container"])
    cohort_join(user=make_user("trainee", PASSWORD), code=cohort.invite_code)
    return cohort


@pytest.mark.parametrize("locale", ["zh-CN", "en-US"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_login_catalogue_lab_and_dashboard_have_no_serious_axe_violations(web, cohort, open_browser, locale, scheme):
    found = {}
    page = open_browser(DESKTOP, 1, locale, color_scheme=scheme, bypass_csp=True)
    page.goto(web + "/")
    found["landing"] = axe_violations(page)
    shot(page, f"a11y-landing-{locale}-{scheme}")
    page.goto(web + "/accounts/login/")
    found["login"] = axe_violations(page)
    page.goto(web + "/accounts/password_reset/")
    found["password reset"] = axe_violations(page)
    log_in(page, web, ("trainee", PASSWORD), "/")
    found["catalogue"] = axe_violations(page)
    page.goto(web + "/labs/first-container/")
    page.wait_for_function("() => window.labTerminal !== undefined")
    found["lab"] = axe_violations(page)
    shot(page, f"a11y-lab-{locale}-{scheme}")

    teacher = open_browser(DESKTOP, 1, locale, color_scheme=scheme, bypass_csp=True)
    log_in(teacher, web, ("teacher", PASSWORD), f"/cohorts/{cohort.id}/")
    found["dashboard"] = axe_violations(teacher)
    shot(teacher, f"a11y-dashboard-{locale}-{scheme}")
    bad = {name: v for name, v in found.items() if v}
    assert not bad, "\n".join(f"{name}: {v['id']} ({v['impact']}): {v['help']}\n    " + "\n    ".join(v["nodes"])
                              for name, vs in bad.items() for v in vs)


@pytest.mark.parametrize("viewport,scale", [(DESKTOP, 1), (PHONE, 2)], ids=["1440-1x", "390-2x"])
def test_keyboard_skip_link_leaving_the_terminal_and_labelled_code_buttons(web, builtin_labs, trainee, open_browser,
                                                                           viewport, scale):
    from playwright.sync_api import expect

    page = open_browser(viewport, scale, "en-US")
    log_in(page, web, trainee, "/labs/first-container/")
    page.wait_for_function("() => window.labTerminal !== undefined")
    focused = "() => document.activeElement && (document.activeElement.getAttribute('data-testid') || document.activeElement.id || document.activeElement.className)"

    # The first Tab reaches the skip link, which takes the focus past the header.
    page.keyboard.press("Tab")
    expect(page.get_by_test_id("skip-link")).to_be_focused()
    expect(page.get_by_test_id("skip-link")).to_be_in_viewport()
    page.keyboard.press("Enter")
    assert page.evaluate(focused) == "main"

    # In the terminal Tab stays there (it completes in the shell) ...
    textarea = page.locator(".xterm-helper-textarea")
    textarea.focus()
    hint = page.get_by_test_id("terminal-hint")
    expect(hint).to_be_visible()  # shown while the terminal has the focus
    assert textarea.get_attribute("aria-describedby") == "terminal-hint"
    page.keyboard.press("Tab")
    expect(textarea).to_be_focused()
    # ... Esc then Tab leaves it, forwards; Esc then Shift+Tab, backwards.
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")
    expect(textarea).not_to_be_focused()
    assert not page.evaluate("() => document.querySelector('.lab-workbench .terminal').contains(document.activeElement)")
    textarea.focus()
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Tab")
    expect(textarea).not_to_be_focused()
    assert page.evaluate("() => document.querySelector('.toolbar').contains(document.activeElement)"), page.evaluate(focused)

    # Copy and Run say what they copy and run.
    copy = page.locator("[data-step='rootfs-without-kernel'] [data-code-copy]").first
    run = page.locator("[data-step='rootfs-without-kernel'] [data-code-run]").first
    assert copy.get_attribute("aria-label") == "Copy: ls / …"
    assert run.get_attribute("aria-label") == "Run in the terminal: ls / …"
