"""The trainee's language, and only it (issue 15, items 14 and 15): translated 404 and
500 pages and server messages, Chinese text without stray spaces, inline code in the
catalogue, names in Chinese order, full-width punctuation in Chinese labels."""
from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import PASSWORD, log_in, needs_chromium
from tests.e2e.test_trainee_terminal import DESKTOP, PHONE, open_browser, shot  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.django_db(transaction=True)]
CJK_SPACE = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef] [\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
LANGS = {"zh-CN": ("找不到页面", "找不到实验", "Page not found"), "en-US": ("Page not found", "Lab not found", "找不到页面")}


@pytest.fixture
def chen(make_user):
    """A trainee whose name is Chinese: family name 陈, given name 晨."""
    user = make_user("chen", PASSWORD)
    user.first_name, user.last_name = "晨", "陈"
    user.save()
    return "chen", PASSWORD


@pytest.mark.parametrize("viewport,scale,locale", [(DESKTOP, 1, "zh-CN"), (PHONE, 2, "en-US")],
                         ids=["1440-1x-zh", "390-2x-en"])
def test_not_found_pages_and_server_messages_speak_the_trainees_language_only(
        web, builtin_labs, chen, open_browser, viewport, scale, locale):
    from playwright.sync_api import expect

    page_title, lab_title, other = LANGS[locale]
    page = open_browser(viewport, scale, locale)
    log_in(page, web, chen, "/")
    response = page.goto(web + "/no/such/page/")
    assert response.status == 404
    expect(page.locator("h1")).to_have_text(page_title)
    expect(page.locator("main")).not_to_contain_text(other)
    expect(page.locator(".site-header")).to_be_visible()  # the site's own page, not a bare "Not Found"
    shot(page, f"404-{locale}-{viewport['width']}")

    response = page.goto(web + "/labs/no-such-lab/")
    assert response.status == 404
    expect(page.locator("h1")).to_have_text(lab_title)
    expect(page.get_by_test_id("error-message")).to_contain_text("no-such-lab")
    text = page.get_by_test_id("error-message").text_content()
    assert bool(re.search(r"[\u4e00-\u9fff]", text)) == (locale == "zh-CN"), text  # one language

    # A JSON error the page shows as it is: in the trainee's language.
    status, error = page.evaluate("""() => fetch('/api/sessions/', {method: 'POST', credentials: 'same-origin',
        headers: {'Content-Type': 'application/json',
                  'X-CSRFToken': document.cookie.match(/csrftoken=([^;]+)/)[1]},
        body: JSON.stringify({lab: 'no-such-lab'})}).then((r) => r.json().then((b) => [r.status, b.error]))""")
    assert status == 404 and bool(re.search(r"[\u4e00-\u9fff]", error)) == (locale == "zh-CN"), error


@pytest.mark.parametrize("viewport,scale", [(DESKTOP, 1), (PHONE, 2)], ids=["1440-1x", "390-2x"])
def test_chinese_text_has_no_stray_spaces_names_and_labels_are_written_the_chinese_way(
        web, builtin_labs, chen, open_browser, viewport, scale):
    from playwright.sync_api import expect

    page = open_browser(viewport, scale, "zh-CN")
    log_in(page, web, chen, "/")
    if viewport is PHONE:
        page.get_by_test_id("menu-toggle").click()
    expect(page.locator(".user-name")).to_have_text("陈晨")  # family name first, no space

    # Catalogue: inline code renders, and a folded YAML summary has no space between CJK.
    card = page.get_by_test_id("lab-build-an-image")
    expect(card.locator(".lab-card-summary code").first).to_have_text(".wh.")
    for summary in page.locator(".lab-card-summary").all_text_contents():
        assert "`" not in summary and not CJK_SPACE.search(summary), summary
    shot(page, f"catalogue-zh-{viewport['width']}", full_page=True)

    page.goto(web + "/labs/first-container/")
    summary = page.locator(".lab-summary").text_content()
    assert "只读的层，你写下" in summary, summary  # was "只读的层， 你写下"
    body = page.locator(".step-body").first.text_content()
    # Line breaks in the Markdown source between CJK characters (one beside **bold**).
    assert "为下次升级内核）。容器不会再启动一次" in body and "被释放，系统运行不再需要" in body, body
    # Chinese labels end in full-width punctuation.
    labels = page.evaluate("""() => Array.from(document.querySelectorAll('#lab-strings'))
      .flatMap((t) => Array.from(t.content.querySelectorAll('[data-key^="countdown."]')))
      .filter((el) => !el.dataset.key.endsWith('.title')).map((el) => el.textContent.trim())""")
    assert labels and all(label.endswith("：") for label in labels), labels
    assert page.get_by_test_id("time-spent").locator("xpath=..").text_content().startswith("用时：")
    shot(page, f"lab-zh-{viewport['width']}")


def test_the_server_error_page_is_translated(rf, settings):
    from django.utils import translation
    from django.views.defaults import server_error

    for lang, title in (("zh-hans", "出错了"), ("en", "Something went wrong")):
        with translation.override(lang):
            body = server_error(rf.get("/")).content.decode()
        assert f"<h1>{title}</h1>" in body and ("Something" in body) == (lang == "en"), body[:400]


@pytest.fixture
def some_progress(builtin_labs, trainee):
    """The trainee passed every step of bootfs-rootfs and the first of first-container."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from labs.models import Step, StepProgress

    user = get_user_model().objects.get(username=trainee[0])
    steps = list(Step.objects.filter(lab__slug="bootfs-rootfs", retired=False))
    steps.append(Step.objects.get(lab__slug="first-container", key="rootfs-without-kernel"))
    for step in steps:
        StepProgress.objects.create(user=user, step=step, passed_at=timezone.now(), passed_by="check", attempts=1)
    return trainee


@pytest.mark.parametrize("viewport,scale,locale", [(DESKTOP, 1, "zh-CN"), (PHONE, 2, "en-US")],
                         ids=["1440-1x-zh", "390-2x-en"])
def test_the_catalogue_shows_progress_and_completion_and_a_finished_lab_links_to_the_next(
        web, some_progress, open_browser, viewport, scale, locale):
    from playwright.sync_api import expect

    page = open_browser(viewport, scale, locale)
    log_in(page, web, some_progress, "/")
    expect(page.get_by_test_id("done-bootfs-rootfs")).to_be_visible()
    expect(page.get_by_test_id("done-first-container")).to_have_count(0)
    bar = page.get_by_test_id("progress-first-container").get_by_role("progressbar")
    expect(bar).to_have_attribute("aria-valuenow", "1")
    expect(bar).to_have_attribute("aria-valuemax", "4")
    expect(page.get_by_test_id("progress-image-layers")).to_have_count(0)  # not started: no bar
    # Prerequisites, each marked when done; the course order puts them first.
    done_first = page.get_by_test_id("requires-image-layers")
    expect(done_first.locator(".requirement.is-done")).to_contain_text("bootfs")
    expect(page.get_by_test_id("requires-container-layer").locator(".requirement.is-done")).to_have_count(0)
    order = page.locator(".lab-card").evaluate_all("(cards) => cards.map((c) => c.dataset.testid)")
    assert order.index("lab-bootfs-rootfs") < order.index("lab-image-layers") < order.index("lab-container-layer")
    shot(page, f"catalogue-progress-{viewport['width']}-{locale}", full_page=True)

    page.goto(web + "/labs/bootfs-rootfs/")
    expect(page.get_by_test_id("completion")).to_be_visible()
    next_lab = page.get_by_test_id("next-lab")
    expect(next_lab).to_contain_text("第一个容器" if locale == "zh-CN" else "Your first container")
    next_lab.click()
    page.wait_for_url(web + "/labs/first-container/")
