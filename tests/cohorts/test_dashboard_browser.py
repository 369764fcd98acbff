"""The cohort dashboard in a real browser (Debian's chromium via Playwright) against the
real ASGI server, Celery worker and runc sandboxes: it changes live, without a reload,
as a trainee starts a sandbox and checks; the instructor watches and stops it.

Everything that touches the ORM happens before Playwright starts (its sync API marks the
main thread as inside an event loop); the trainee acts over HTTP and WebSocket."""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import IS_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser, pytest.mark.root, pytest.mark.sandbox,
    pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium (/usr/bin/chromium) is not installed"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def chromium() -> Iterator:
    """A fresh headless chromium for one test."""
    pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def signed_in_context(browser, web: str, client, lang: str = "zh-hans"):
    """A browser context carrying a Django test client's session, plus a CSRF cookie."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    context.set_default_timeout(20_000)
    csrf = secrets.token_hex(16)  # an unmasked 32-character secret: Django accepts it as the token
    context.add_cookies([
        {"name": "sessionid", "value": client.cookies["sessionid"].value, "url": web},
        {"name": "csrftoken", "value": csrf, "url": web},
        {"name": "django_language", "value": lang, "url": web},
    ])
    context.csrf = csrf
    return context


def api(context, web: str, method: str, path: str, data: dict | None = None) -> dict:
    resp = context.request.fetch(f"{web}{path}", method=method, data=json.dumps(data) if data is not None else None,
                                 headers={"X-CSRFToken": context.csrf, "Content-Type": "application/json",
                                          "Referer": web + "/"})
    assert resp.ok, f"{method} {path}: {resp.status} {resp.text()}"
    return resp.json() if resp.text() else {}


def cell(page, user_id: int, step: str):
    return page.get_by_test_id(f"cell-{user_id}-smoke-{step}")


def wait_state(page, user_id: int, step: str, state: str) -> None:
    page.wait_for_function(
        "([id, s]) => { const c = document.querySelector(`[data-testid='${id}']`); return c && c.dataset.state === s; }",
        arg=[f"cell-{user_id}-smoke-{step}", state])


def test_the_dashboard_updates_live_as_a_trainee_works_and_the_instructor_watches_and_stops(
        worker, web, klass, chromium, tmp_path):
    from websockets.sync.client import connect

    from labs.hostconfig import host_config
    from sandbox.service import sandbox_exec

    cid, uid = klass.cohort.id, klass.trainee.id
    teacher = signed_in_context(chromium, web, klass.teacher_client)
    trainee = signed_in_context(chromium, web, klass.trainee_client)
    page = teacher.new_page()
    page.goto(f"{web}/cohorts/{cid}/")
    page.wait_for_selector("[data-testid=live-badge][data-live=true]")
    assert cell(page, uid, "make-file").get_attribute("data-state") == "not_started"
    page.evaluate("window.__sameDocument = 42")  # gone if the page reloads

    # The trainee starts a sandbox: the dashboard shows it, with a Watch button.
    session = api(trainee, web, "POST", "/api/sessions/", {"lab": "smoke"})
    page.get_by_test_id(f"watch-{uid}-smoke").wait_for()
    # A failed check: the cell turns "working" with one attempt.
    assert api(trainee, web, "POST", f"/api/sessions/{session['id']}/check?wait=1", {"step": "make-file"})["passed"] is False
    wait_state(page, uid, "make-file", "working")
    assert cell(page, uid, "make-file").inner_text().startswith("1×")
    # Then the task and a passing check: "passed", and the numbers follow.
    sandbox_exec(host_config(), session["id"], "touch /root/done", timeout=5)
    assert api(trainee, web, "POST", f"/api/sessions/{session['id']}/check?wait=1", {"step": "make-file"})["passed"] is True
    wait_state(page, uid, "make-file", "passed")
    stats = page.get_by_test_id("stats-smoke-make-file").inner_text().split("\t")
    assert stats[:3] == ["1. 建一个文件", "1 / 1", "1"] and stats[-1] == "2"
    assert page.evaluate("window.__sameDocument") == 42
    funnel = page.evaluate("() => Chart.getChart(document.querySelector('[data-testid=funnel-smoke]')).data.datasets"
                           ".map(d => d.data)")
    assert funnel == [[1, 0], [1, 0]]
    shots = Path(os.environ.get("COHORTS_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "cohort-dashboard.png"), full_page=True)

    # Watching: what the trainee types appears on the instructor's read-only terminal.
    from playwright.sync_api import expect

    trainee_page = trainee.new_page()
    trainee_page.goto(f"{web}/labs/smoke/")
    trainee_page.wait_for_function("() => window.labTerminal && window.labTerminal.live === true")
    with page.expect_navigation():
        page.get_by_test_id(f"watch-{uid}-smoke").click()
    page.wait_for_function("() => window.__watchTerminal && window.__watchTerminal.live === true")
    # With context: their step and last check; a cursor that does not pretend input is possible.
    expect(page.get_by_test_id("watch-step")).to_contain_text("2 / 2")
    expect(page.get_by_test_id("watch-last-check")).to_have_attribute("data-passed", "true")
    assert page.evaluate("[__watchTerm.options.cursorBlink, __watchTerm.options.disableStdin, __watchTerm.textarea.disabled]") \
        == [False, True, True]
    # The trainee sees that they are watched, and by whom.
    expect(trainee_page.get_by_test_id("watch-badge")).to_contain_text("teacher")
    ws_url = web.replace("http", "ws") + session["ws"]
    with connect(ws_url, additional_headers={"Cookie": f"sessionid={klass.trainee_client.cookies['sessionid'].value}"},
                 origin=web, open_timeout=10) as ws:
        ws.send(b"echo watched-$((6*7))\r")
        page.wait_for_function(
            "() => { const b = window.__watchTerm.buffer.active; for (let i = 0; i < b.length; i++) {"
            " const l = b.getLine(i); if (l && l.translateToString(true).includes('watched-42')) return true; } return false; }")
    page.screenshot(path=str(shots / "cohort-watch.png"))
    # A terminal tab the trainee opens appears on the watch page, read-only too.
    with connect(ws_url + "tabs/1/", additional_headers={"Cookie": f"sessionid={klass.trainee_client.cookies['sessionid'].value}"},
                 origin=web, open_timeout=10) as tab_ws:
        assert json.loads(tab_ws.recv(timeout=20))["type"] == "hello"
        tab_ws.send(b"echo in-a-tab-$((7*6))\r")
        page.get_by_test_id("watch-tab-1").click()
        expect(page.get_by_test_id("watch-terminal-1")).to_be_visible()
        expect(page.get_by_test_id("watch-terminal")).to_be_hidden()
        page.wait_for_function(
            "() => { const t = window.__watchTabs[1]; if (!t) return false; const b = t.term.term.buffer.active;"
            " for (let i = 0; i < b.length; i++) { const l = b.getLine(i);"
            " if (l && l.translateToString(true).includes('in-a-tab-42')) return true; } return false; }")
        assert page.evaluate("__watchTabs[1].term.term.options.disableStdin") is True
        tab_ws.send(json.dumps({"type": "tab.close"}))  # the trainee closes it: it goes from the watch page
        expect(page.get_by_test_id("watch-tab-1")).to_have_count(0, timeout=20_000)
    expect(page.get_by_test_id("watch-terminal")).to_be_visible()

    # Back on the dashboard: stop the trainee's sandbox; a replay link appears.
    page.goto(f"{web}/cohorts/{cid}/")
    expect(trainee_page.get_by_test_id("watch-badge")).to_be_hidden()  # no longer watched
    page.wait_for_selector("[data-testid=live-badge][data-live=true]")
    # Stop asks first: dismissed, nothing happens; accepted, the sandbox stops.
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_test_id(f"stop-{uid}-smoke").click()
    page.evaluate("1")  # a round trip: a request sent by the click would have been seen by now
    assert not [u for u in requests if u.endswith("/stop")]
    assert api(trainee, web, "GET", f"/api/sessions/{session['id']}/")["state"] == "ready"
    dialogs = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    page.get_by_test_id(f"stop-{uid}-smoke").click()
    page.get_by_test_id(f"replay-{session['id']}").wait_for()
    assert "ada" in dialogs[0]
    expect(trainee_page.get_by_test_id("error-message")).to_contain_text("teacher")  # the trainee is told who
    assert page.get_by_test_id(f"watch-{uid}-smoke").count() == 0
    page.get_by_test_id(f"replay-{session['id']}").click()
    page.wait_for_url(f"{web}/sessions/{session['id']}/replay/")
    # Replay: markers at the failed and the passed check; pause, seek by a marker, speed.
    fail, passed = page.get_by_test_id("marker-fail-make-file"), page.get_by_test_id("marker-pass-make-file")
    passed.wait_for()
    assert fail.count() == 1 and page.get_by_test_id("marker-step-make-file").count() == 1
    page.wait_for_function("() => window.__replayDone === true")
    page.get_by_test_id("replay-speed").select_option("1")
    page.get_by_test_id("replay-timeline").fill("0")
    assert page.evaluate("window.__replayPos") == 0
    page.get_by_test_id("replay-play").click()
    assert page.get_by_test_id("replay-play").get_attribute("aria-pressed") == "true"
    page.get_by_test_id("replay-play").click()  # pause
    assert page.get_by_test_id("replay-play").get_attribute("aria-pressed") == "false"
    paused_at = page.evaluate("window.__replayPos")
    passed.click()
    seek = page.evaluate("window.__replayPos")
    assert seek > paused_at and page.get_by_test_id("replay-play").get_attribute("aria-pressed") == "false"
    assert page.get_by_test_id("replay-stuck").is_hidden()  # one failed check: never stuck
    teacher.close()
    trainee.close()


@pytest.fixture
def other_teacher(transactional_db):
    from tests.cohorts.conftest import make_instructor, signed_in

    return signed_in(make_instructor("other-teacher"))


def test_another_instructor_gets_403_and_a_trainee_sees_only_their_own_row(web, klass, other_teacher, chromium):
    other, cid = other_teacher, klass.cohort.id
    ctx = signed_in_context(chromium, web, other)
    page = ctx.new_page()
    assert page.goto(f"{web}/cohorts/{cid}/").status == 403
    ctx.close()
    ctx = signed_in_context(chromium, web, klass.trainee_client)
    page = ctx.new_page()
    assert page.goto(f"{web}/cohorts/{cid}/").status == 200
    assert page.get_by_test_id("my-progress-smoke").is_visible()
    assert page.get_by_test_id("dashboard").count() == 0
    ctx.close()


@pytest.fixture
def admin_client(transactional_db):
    from django.contrib.auth import get_user_model

    from tests.cohorts.conftest import signed_in

    return signed_in(get_user_model().objects.create_user("ops", password="x", is_staff=True))


def test_admins_see_each_hosts_live_sandboxes_with_memory_and_pids(worker, web, klass, admin_client, chromium, tmp_path):
    trainee = signed_in_context(chromium, web, klass.trainee_client)
    session = api(trainee, web, "POST", "/api/sessions/", {"lab": "smoke"})
    from tests.conftest import wait_for

    wait_for(lambda: api(trainee, web, "GET", f"/api/sessions/{session['id']}/")["state"] == "ready", what="ready")
    admin = signed_in_context(chromium, web, admin_client)
    page = admin.new_page()
    page.goto(f"{web}/ops/sandboxes/")
    row = page.get_by_test_id(f"sandbox-{session['id']}")
    assert "就绪" in row.inner_text() and "ada" in row.inner_text()  # the state in the page's language (zh-hans)
    assert float(page.get_by_test_id(f"memory-{session['id']}").inner_text()) > 0
    assert int(page.get_by_test_id(f"pids-{session['id']}").inner_text()) >= 1
    shots = Path(os.environ.get("COHORTS_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "sandboxes.png"), full_page=True)
    api(trainee, web, "DELETE", f"/api/sessions/{session['id']}/")
    admin.close()
    trainee.close()


@pytest.fixture
def newcomer(klass, make_user):
    from tests.cohorts.conftest import signed_in

    user = make_user("grace")
    return user.id, signed_in(user)


def test_a_trainee_who_joins_appears_live_and_the_numbers_follow(worker, web, klass, newcomer, chromium):
    uid, client = newcomer
    teacher = signed_in_context(chromium, web, klass.teacher_client)
    joiner = signed_in_context(chromium, web, client)
    page = teacher.new_page()
    page.goto(f"{web}/cohorts/{klass.cohort.id}/")
    page.wait_for_selector("[data-testid=live-badge][data-live=true]")
    assert page.get_by_test_id("stats-smoke-make-file").inner_text().split("\t")[1] == "0 / 1"
    page.evaluate("window.__sameDocument = 42")
    api(joiner, web, "POST", "/api/cohorts/join", {"code": klass.cohort.invite_code})
    cell(page, uid, "make-file").wait_for()
    assert cell(page, uid, "make-file").get_attribute("data-state") == "not_started"
    assert page.get_by_test_id("stats-smoke-make-file").inner_text().split("\t")[1] == "0 / 2"
    assert page.evaluate("window.__sameDocument") == 42
    teacher.close()
    joiner.close()


@pytest.fixture
def class_of_30(klass, smoke_lab, make_user):
    """30 trainees on the smoke lab and the learning lab: one stuck (zed), some passed,
    one quiz answered; returns (cohort id, zed's id)."""
    from datetime import timedelta

    from django.utils import timezone

    from cohorts.models import Membership
    from cohorts.services import cohort_assign_lab
    from labs.labfile import load_lab
    from labs.models import QuizAnswer, StepProgress
    from labs.services import lab_import
    from tests.conftest import ROOT

    learning = lab_import(spec=load_lab(ROOT / "tests" / "fixtures" / "labs" / "learning"))[0]
    cohort_assign_lab(cohort=klass.cohort, lab_slug="learning")
    make = smoke_lab.steps.get(key="make-file")
    users = [make_user(f"t{i:02d}") for i in range(28)] + [make_user("zed")]
    Membership.objects.bulk_create([Membership(cohort=klass.cohort, user=u) for u in users])
    for i, u in enumerate(users[:10]):
        StepProgress.objects.create(user=u, step=make, attempts=1 + i % 3, passed_at=timezone.now())
    stuck = StepProgress.objects.create(user=users[-1], step=make, attempts=5)
    StepProgress.objects.filter(pk=stuck.pk).update(started_at=timezone.now() - timedelta(minutes=30))
    QuizAnswer.objects.create(user=users[0], step=learning.steps.get(key="pick-two"), answer=["uts", "pid"], correct=True)
    return klass.cohort.id, users[-1].id


def test_the_matrix_reads_at_a_glance_for_a_class_of_30_on_a_laptop_screen(web, klass, class_of_30, chromium):
    from playwright.sync_api import expect

    cid, zed = class_of_30
    context = signed_in_context(chromium, web, klass.teacher_client)
    page = context.new_page()
    page.set_viewport_size({"width": 1366, "height": 768})
    page.goto(f"{web}/cohorts/{cid}/")
    page.wait_for_selector("[data-testid=matrix-smoke]")
    head = page.get_by_test_id("head-smoke-make-file")
    assert head.inner_text() == "1. 建一个文件" and head.get_attribute("title") == "1. 建一个文件"
    # Stuck first: zed, whose name sorts last, is the first row; one number per cell, details on hover.
    first = page.locator("[data-testid=matrix-smoke] tbody tr").first
    assert first.get_attribute("data-user") == str(zed)
    stuck = cell(page, zed, "make-file")
    assert stuck.get_attribute("data-state") == "stuck" and stuck.inner_text() == "5×"
    assert "5" in stuck.get_attribute("title") and stuck.get_attribute("tabindex") == "0"
    assert page.locator("[data-testid=matrix-smoke] td[data-state=passed]").first.inner_text().endswith("m")
    # Fits the screen: no sideways scrolling for 30 trainees.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.evaluate("[...document.querySelectorAll('.dash-section')].every(s => s.scrollWidth <= s.clientWidth)")
    shots = os.environ.get("COHORTS_SCREENSHOTS")
    if shots:
        page.screenshot(path=str(Path(shots) / "cohort-dashboard-30.png"), full_page=True)
    # Filter and sort.
    page.get_by_test_id("matrix-filter").fill("zed")
    expect(page.locator("[data-testid=matrix-smoke] tbody tr")).to_have_count(1)
    page.get_by_test_id("matrix-filter").fill("")
    page.get_by_test_id("matrix-sort").select_option("name")
    assert page.locator("[data-testid=matrix-smoke] tbody tr").first.get_attribute("data-user") != str(zed)
    # Quizzes: only the one with answers, collapsed; its chart is drawn when opened.
    expect(page.locator(".quiz-box")).to_have_count(1)
    quiz = page.get_by_test_id("quiz-learning-pick-two")
    assert quiz.get_attribute("open") is None
    quiz.locator("summary").click()
    page.wait_for_function("() => !!Chart.getChart(document.querySelector('[data-testid=quiz-chart-pick-two]'))")
    context.close()
