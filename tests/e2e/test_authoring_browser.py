"""Authoring in a real browser (Debian's chromium through Playwright), as an instructor
who is not staff, with a trainee in a second context: upload, preview with a real
sandbox, Test (the table streams in live), publish; a second version stays a draft until
published. Real ASGI server, Celery worker and runc sandboxes."""
from __future__ import annotations

import pytest

from tests.e2e.conftest import PASSWORD, log_in, needs_chromium
from tests.e2e.test_browser import run, sandboxed, wait_for_line, wait_until_live
from tests.e2e.test_learning_browser import orm, shot
from tests.labs.test_authoring import archive, lab_yaml

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.django_db(transaction=True)]


@sandboxed
def test_an_instructor_uploads_previews_tests_and_publishes_a_lab_a_trainee_sees_it_only_then(
        worker, web, make_user, tmp_path, browser_context, page):
    from playwright.sync_api import expect

    def users():
        from django.contrib.auth.models import Group

        author = make_user("author", PASSWORD)
        author.groups.add(Group.objects.get_or_create(name="instructors")[0])
        make_user("student", PASSWORD)

    orm(users)
    log_in(page, web, ("author", PASSWORD), "/")
    page.get_by_test_id("my-labs-link").click()
    page.get_by_test_id("upload-link").click()
    (tmp_path / "mine.tar.gz").write_bytes(archive(lab_yaml(extra_step=True)))
    page.get_by_test_id("upload-file").set_input_files(str(tmp_path / "mine.tar.gz"))
    page.get_by_test_id("upload-submit").click()
    page.wait_for_url(f"{web}/labs/mine/preview/")
    expect(page.get_by_test_id("preview-test")).to_have_attribute("data-test-state", "none")

    # Preview with a real sandbox: Start, type, Check.
    page.get_by_test_id("start-button").click()
    expect(page.get_by_test_id("state-badge")).to_have_attribute("data-state", "ready", timeout=30_000)
    wait_until_live(page)
    run(page, "touch /root/x; echo previewed-$((40+2))")
    wait_for_line(page, "previewed-42")
    shot(page, "authoring-preview")

    student_context = browser_context.browser.new_context()
    student = student_context.new_page()
    log_in(student, web, ("student", PASSWORD), "/")
    assert student.goto(f"{web}/labs/mine/").status == 404
    assert student.goto(f"{web}/labs/mine/preview/").status == 404

    # Test from the page: the table fills in live, then the result shows beside Publish.
    page.get_by_test_id("version-link").click()
    page.wait_for_url(f"{web}/labs/mine/versions/1/")
    page.get_by_test_id("test-button").click()
    expect(page.get_by_test_id("test-row-first")).to_contain_text("PASS", timeout=120_000)
    expect(page.get_by_test_id("test-row-second")).to_contain_text("PASS", timeout=120_000)
    expect(page.get_by_test_id("test-state")).to_have_attribute("data-state", "passed")
    expect(page.get_by_test_id("publish-override")).to_be_hidden()
    shot(page, "authoring-test")
    page.get_by_test_id("publish-button").click()
    page.wait_for_url(f"{web}/labs/mine/versions/")
    expect(page.get_by_test_id("version-1")).to_contain_text("author")
    assert student.goto(f"{web}/labs/mine/").status == 200

    # A second version is a draft: the trainee still sees the first until it is published.
    page.goto(f"{web}/labs/upload/")
    (tmp_path / "mine2.tar.gz").write_bytes(archive(lab_yaml(title="Second edition")))
    page.get_by_test_id("upload-file").set_input_files(str(tmp_path / "mine2.tar.gz"))
    page.get_by_test_id("upload-submit").click()
    page.wait_for_url(f"{web}/labs/mine__draft/preview/")
    student.goto(f"{web}/labs/mine/")
    expect(student.locator("details.step")).to_have_count(2)
    page.goto(f"{web}/labs/mine/versions/2/")
    expect(page.locator(".diff-del")).to_contain_text(["-  - id: second"])
    shot(page, "authoring-diff")
    page.get_by_test_id("publish-button").click()
    page.wait_for_url(f"{web}/labs/mine/versions/")
    student.goto(f"{web}/labs/mine/")
    expect(student.locator("details.step")).to_have_count(1)
    student_context.close()


STEP_LAB = """slug: mine
title: {zh-hans: 我的实验, en: My lab}
summary: A lab for the tests.
level: beginner
minutes: 5
steps:
  - id: first
    title: {zh-hans: 第一步, en: First step}
    text_file: steps/first.md
"""


def test_an_instructor_edits_the_lab_in_place_with_inline_checks_and_a_live_preview(worker, web, make_user, tmp_path, page):
    from playwright.sync_api import expect

    def users():
        from django.contrib.auth.models import Group

        author = make_user("author", PASSWORD)
        author.groups.add(Group.objects.get_or_create(name="instructors")[0])

    orm(users)
    log_in(page, web, ("author", PASSWORD), "/labs/upload/")
    (tmp_path / "mine.tar.gz").write_bytes(archive(STEP_LAB, extra={"steps/first.md": "## Layers\n\nRun `ls`.\n"}))
    page.get_by_test_id("upload-file").set_input_files(str(tmp_path / "mine.tar.gz"))
    page.get_by_test_id("upload-submit").click()
    page.wait_for_url(f"{web}/labs/mine/preview/")
    page.goto(f"{web}/labs/mine/versions/")
    page.get_by_test_id("edit-link").click()
    page.wait_for_function("() => window.__editorReady === true")
    expect(page.get_by_test_id("editor-status")).to_have_attribute("data-problems", "false")
    # Highlighted YAML: keys are styled tokens, not plain text.
    assert page.evaluate("document.querySelectorAll('.cm-line span').length") > 5
    # A typo: shown inline, at its line, with the loader's suggestion.
    page.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("    chek: test -f /root/x\n", delay=5)
    expect(page.locator(".cm-lintRange-error").first).to_be_visible(timeout=10_000)
    expect(page.get_by_test_id("editor-status")).to_have_attribute("data-problems", "true")
    assert "did you mean 'check'" in page.get_by_test_id("editor-status").get_attribute("title")
    for _ in range(len("    chek: test -f /root/x\n")):
        page.keyboard.press("Backspace")
    expect(page.get_by_test_id("editor-status")).to_have_attribute("data-problems", "false", timeout=10_000)
    # Keys complete from the lab JSON Schema, with its descriptions.
    page.keyboard.type("prereq", delay=5)
    option = page.locator(".cm-tooltip-autocomplete li", has_text="prerequisites")
    expect(option).to_be_visible()
    page.keyboard.press("Escape")
    for _ in range(len("prereq")):
        page.keyboard.press("Backspace")
    # The step's Markdown, rendered live beside it.
    page.get_by_test_id("editor-file-steps/first.md").click()
    expect(page.get_by_test_id("editor-preview").locator("h2")).to_have_text("Layers")
    page.locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\n## Whiteouts\n", delay=5)
    expect(page.get_by_test_id("editor-preview").locator("h2")).to_have_count(2)
    shot(page, "authoring-editor")
    page.get_by_test_id("editor-save").click()
    expect(page.get_by_test_id("editor-result")).to_have_attribute("data-state", "saved")
    page.get_by_test_id("editor-version-link").click()
    page.wait_for_url(f"{web}/labs/mine/versions/2/")
    expect(page.locator(".diff-add")).to_contain_text(["+## Whiteouts"])
