"""The learning experience in a real browser (Debian's chromium through Playwright) against
the real ASGI server, a real Celery worker and real runc sandboxes: hints, the solution
with Copy/Run, quizzes, auto-check, completion, Reset/Extend and the warning banner,
preview and upload. Fixtures come from tests/e2e/conftest.py.

Set LAB_SCREENSHOTS_DIR to keep a screenshot of each screen for review.
"""
from __future__ import annotations

import concurrent.futures
import io
import os
import re
import tarfile

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import PASSWORD, log_in, needs_chromium
from tests.e2e.test_browser import PROMPT, READ_LINES, run, sandboxed, wait_for_line, wait_until_live

pytestmark = [pytest.mark.browser, needs_chromium, pytest.mark.django_db(transaction=True)]
FIXTURE = ROOT / "tests" / "fixtures" / "labs" / "learning"


def orm(fn, *args, **kwargs):
    """Run ORM code off the main thread: Playwright's sync API marks it as inside an event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def shot(page, name: str) -> None:
    folder = os.environ.get("LAB_SCREENSHOTS_DIR")
    if folder:
        page.evaluate("document.fonts.ready.then(() => true)")
        page.screenshot(path=os.path.join(folder, name + ".png"))


@pytest.fixture
def labs_imported(transactional_db):
    from labs.labfile import load_lab
    from labs.services import lab_import

    for path in (ROOT / "labs" / "builtin" / "first-container", FIXTURE):
        lab_import(spec=load_lab(path))


def start(page, web: str, user, slug: str) -> str:
    """Sign in, open a lab, press Start; the session id once the shell is live."""
    from playwright.sync_api import expect

    log_in(page, web, user, f"/labs/{slug}/")
    page.get_by_test_id("start-button").click()
    expect(page.get_by_test_id("state-badge")).to_have_attribute("data-state", "ready", timeout=30_000)
    wait_until_live(page)
    return page.request.get(f"{web}/api/sessions/").json()[0]["id"]


@sandboxed
def test_hints_then_the_solution_after_three_failed_checks_and_run_passes_the_step(
        worker, web, labs_imported, trainee, browser_context, page):
    from playwright.sync_api import expect

    browser_context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web)
    start(page, web, trainee, "first-container")
    step = page.get_by_test_id("step-rootfs-without-kernel")
    page.get_by_test_id("hint-rootfs-without-kernel").click()
    expect(page.get_by_test_id("hints-rootfs-without-kernel").locator("li")).to_have_count(1)
    expect(page.get_by_test_id("hints-rootfs-without-kernel")).to_contain_text("ls /boot")
    expect(page.get_by_test_id("hint-rootfs-without-kernel")).to_contain_text("1")  # (1 left)
    page.get_by_test_id("hint-rootfs-without-kernel").click()
    expect(page.get_by_test_id("hint-rootfs-without-kernel")).to_be_disabled()

    result = page.get_by_test_id("result-rootfs-without-kernel")
    solution = page.get_by_test_id("solution-rootfs-without-kernel")
    for attempt in range(3):
        expect(solution).to_be_hidden()
        page.get_by_test_id("check-rootfs-without-kernel").click()
        expect(result).to_have_attribute("data-passed", "false", timeout=15_000)
        expect(page.get_by_test_id("check-rootfs-without-kernel")).to_be_enabled()
    expect(solution).to_be_visible()  # shown by itself after the third failed check
    expect(solution).to_contain_text("uname -r > /root/answers/kernel")
    shot(page, "learning-solution")

    solution.locator("[data-code-copy]").click()
    expect(solution.locator("[data-code-copy]")).to_have_text(re.compile("已复制|Copied"))
    assert page.evaluate("navigator.clipboard.readText()") == "mkdir -p /root/answers\nuname -r > /root/answers/kernel\n"
    solution.locator("[data-code-run]").click()  # types the script into the terminal
    run(page, "cat /root/answers/kernel; echo ran-$((2+3))")
    wait_for_line(page, r"^ran-5$")
    page.get_by_test_id("check-rootfs-without-kernel").click()
    expect(result).to_have_attribute("data-passed", "true", timeout=15_000)
    expect(step).to_have_class(re.compile(r"\bis-passed\b"))
    expect(page.get_by_test_id("step-image-layers")).to_have_attribute("open", "")

    progress = page.request.get(f"{web}/api/labs/first-container/progress").json()["steps"][0]
    assert (progress["attempts"], progress["hints_used"], progress["solution_used"], progress["passed_by"]) == (4, 2, True, "check")


@sandboxed
def test_a_run_button_in_the_lesson_and_auto_check_pass_a_step_without_pressing_check(
        worker, web, labs_imported, trainee, page):
    from playwright.sync_api import expect

    start(page, web, trainee, "learning")
    step = page.get_by_test_id("step-auto-file")
    expect(page.get_by_test_id("auto-note-auto-file")).to_be_visible()
    step.locator(".step-body .codeblock [data-code-run]").click()  # `touch /root/auto`, prompt stripped
    wait_for_line(page, r"touch /root/auto$")
    result = page.get_by_test_id("result-auto-file")
    expect(result).to_have_attribute("data-passed", "true", timeout=35_000)  # polled every 10 s
    expect(result).to_contain_text(re.compile("自动检查|checked automatically"))
    expect(page.locator("[data-progress-done]")).to_have_text("1")
    expect(page.get_by_test_id("step-pick-two")).to_have_attribute("open", "")


def test_quizzes_and_reading_complete_the_lab_which_the_page_remembers_in_both_languages(
        web, labs_imported, trainee, browser_context, page):
    from playwright.sync_api import expect

    from django.contrib.auth import get_user_model

    from labs.learning import progress_mark_passed
    from labs.models import Step

    orm(lambda: progress_mark_passed(user=get_user_model().objects.get(username=trainee[0]),
                                     step=Step.objects.get(key="auto-file"), by="auto-check"))

    log_in(page, web, trainee, "/labs/learning/")
    expect(page.get_by_test_id("step-pick-two")).to_have_attribute("open", "")
    page.get_by_test_id("choice-pick-two-uts").check()
    page.get_by_test_id("answer-pick-two").click()
    feedback = page.get_by_test_id("quiz-feedback-pick-two")
    expect(feedback).to_have_attribute("data-correct", "false")
    expect(feedback).to_contain_text("不太对")
    page.get_by_test_id("choice-pick-two-pid").check()
    page.get_by_test_id("answer-pick-two").click()
    expect(feedback).to_have_attribute("data-correct", "true")
    expect(feedback).to_contain_text("ext4 是文件系统")
    expect(page.get_by_test_id("step-pick-two")).to_have_attribute("data-passed", "true")

    page.get_by_test_id("quiz-text-name-it").fill(" overlayfs ")
    page.get_by_test_id("quiz-text-name-it").press("Enter")
    expect(page.get_by_test_id("quiz-feedback-name-it")).to_have_attribute("data-correct", "true")
    expect(page.get_by_test_id("completion")).to_be_hidden()
    page.get_by_test_id("read-read-me").click()
    completion = page.get_by_test_id("completion")
    expect(completion).to_be_visible()
    expect(completion).to_contain_text("实验完成")
    expect(page.get_by_test_id("time-spent")).to_have_text(re.compile(r"\d+ 秒|\d+ 分"))
    expect(page.locator("[data-progress-done]")).to_have_text("4")
    shot(page, "learning-complete-zh")

    browser_context.add_cookies([{"name": "django_language", "value": "en", "url": web}])
    page.reload()
    expect(completion).to_be_visible()
    expect(completion).to_contain_text("Lab complete")
    expect(page.get_by_test_id("step-name-it")).to_contain_text("Name it")
    expect(page.get_by_test_id("quiz-feedback-name-it")).to_contain_text("It is overlayfs.")
    assert page.locator("details.step[data-passed='true']").count() == 4
    assert page.locator("[data-progress-fill]").evaluate("el => el.style.width") == "100%"
    page.get_by_test_id("back-to-catalogue").click()
    page.wait_for_url(web + "/")
    shot(page, "catalogue")


@sandboxed
def test_countdown_extend_to_the_limit_warning_banner_and_reset(worker, web, labs_imported, trainee, page):
    from datetime import timedelta

    from django.utils import timezone
    from playwright.sync_api import expect

    from labs.models import Session
    from labs.services import sessions_reap

    sid = start(page, web, trainee, "first-container")
    countdown = page.get_by_test_id("countdown")
    expect(countdown).to_be_visible()
    # first-container: idle 20 minutes, lifetime 60: the idle limit comes first, and says so.
    expect(countdown).to_have_attribute("data-reason", "idle")
    expect(countdown).to_contain_text(re.compile(r"(19|20):\d\d"))
    expect(countdown).to_contain_text("闲置")

    # The lifetime ends in 3 minutes: the reaper warns, the page shows a banner with Extend.
    orm(lambda: Session.objects.filter(id=sid).update(expires_at=timezone.now() + timedelta(minutes=3)))
    assert orm(sessions_reap)["warned"] == 1
    banner = page.get_by_test_id("session-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("时间上限")
    expect(countdown).to_have_attribute("data-reason", "lifetime")  # now the lifetime ends first
    expect(countdown).to_contain_text(re.compile(r"\b[0-3]:\d\d"))
    shot(page, "learning-warning")
    page.get_by_test_id("banner-extend").click()
    expect(banner).to_contain_text("已延长")
    # One more 60-minute block after the current end (3 minutes from now), not from now;
    # the idle limit (20 minutes, restarted by Extend) is again what comes first.
    expires = orm(lambda: Session.objects.get(id=sid).expires_at)
    assert timedelta(minutes=62) < expires - timezone.now() <= timedelta(minutes=63), expires - timezone.now()
    expect(countdown).to_have_attribute("data-reason", "idle")
    expect(countdown).to_contain_text(re.compile(r"(19|20):\d\d"))

    # At the lab's limit (twice its lifetime), Extend answers 409 and says so.
    orm(lambda: Session.objects.filter(id=sid).update(created_at=timezone.now() - timedelta(minutes=100)))
    page.get_by_test_id("extend-button").click()
    expect(banner).to_contain_text("不能再延长")  # in the page's language only

    # Made outside the terminal: the relay re-feeds a reset session's old keystrokes to the
    # new shell (see test_learning.py's xfail), which would make it again.
    from labs.hostconfig import host_config
    from sandbox.service import sandbox_exec

    assert orm(sandbox_exec, host_config(), sid, "touch /root/marker", timeout=5).exit_code == 0
    page.get_by_test_id("reset-button").click()
    page.get_by_test_id("reset-confirm").click()  # Reset asks first (issue 15)
    # A fresh sandbox greets again: a second welcome, then a prompt after it.
    page.wait_for_function("(re) => {" + READ_LINES + "return lines.filter((l) => /built-in shell/.test(l)).length === 2"
                           " && new RegExp(re).test(lines.filter((l) => l).pop()); }", arg=PROMPT, timeout=30_000)
    expect(page.get_by_test_id("state-badge")).to_have_attribute("data-state", "ready")
    expect(page.get_by_test_id("session-banner")).to_be_hidden()
    run(page, "test -e /root/marker && echo still-there || echo gone-$((2+2))")
    wait_for_line(page, r"^gone-4$")


def lab_tar_gz(*, broken: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in FIXTURE.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                if broken and path.name == "lab.yaml":
                    data = data.replace(b"level: beginner", b"level: expert")
                info = tarfile.TarInfo("learning/" + str(path.relative_to(FIXTURE)))
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_staff_upload_a_lab_see_errors_preview_it_and_publish_it(worker, web, make_user, tmp_path, browser_context, page):
    from playwright.sync_api import expect

    def users():
        staff = make_user("instructor", PASSWORD)
        staff.is_staff = True
        staff.save()
        make_user("student", PASSWORD)

    orm(users)
    log_in(page, web, ("instructor", PASSWORD), "/")
    page.get_by_test_id("upload-link").click()
    (tmp_path / "broken.tar.gz").write_bytes(lab_tar_gz(broken=True))
    page.get_by_test_id("upload-file").set_input_files(str(tmp_path / "broken.tar.gz"))
    page.get_by_test_id("upload-submit").click()
    expect(page.get_by_test_id("upload-errors")).to_contain_text(re.compile(r"lab\.yaml:5:\d+: level"), timeout=30_000)
    shot(page, "upload-errors")

    (tmp_path / "learning.tar.gz").write_bytes(lab_tar_gz())
    page.get_by_test_id("upload-file").set_input_files(str(tmp_path / "learning.tar.gz"))
    page.get_by_test_id("upload-submit").click()
    page.wait_for_url(f"{web}/labs/learning/preview/")
    expect(page.get_by_test_id("preview-banner")).to_contain_text("尚未发布")
    expect(page.locator("details.step")).to_have_count(4)
    shot(page, "preview")

    student = browser_context.browser.new_context()
    other = student.new_page()
    log_in(other, web, ("student", PASSWORD), "/")
    assert other.goto(f"{web}/labs/learning/preview/").status == 404
    assert other.goto(f"{web}/labs/learning/").status == 404
    page.get_by_test_id("publish-button").click()
    page.wait_for_url(f"{web}/labs/learning/")
    assert other.goto(f"{web}/labs/learning/").status == 200
    student.close()
