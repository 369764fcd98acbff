"""The learning experience: hints, solutions, quizzes, progress, auto-check, preview, upload.

API tests run against the real database and Redis; the auto-check tests against a real
worker host with real runc sandboxes and the real ASGI server (for the WebSocket event).
"""
from __future__ import annotations

import io
import json
import re
import tarfile
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from tests.conftest import IS_ROOT, ROOT, wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]
FIXTURE = ROOT / "tests" / "fixtures" / "labs" / "learning"


def sandboxed(test):
    """A test that starts real runc sandboxes: root only (CI is root)."""
    for mark in (pytest.mark.root, pytest.mark.sandbox, pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root")):
        test = mark(test)
    return test


@pytest.fixture
def learning_lab(transactional_db):
    from labs.labfile import load_lab
    from labs.services import lab_import

    return lab_import(spec=load_lab(FIXTURE))[0]


@pytest.fixture
def first_container(transactional_db):
    """Only the first built-in lab (other built-in labs may be half-written in a working tree)."""
    from labs.labfile import load_lab
    from labs.services import lab_import

    return lab_import(spec=load_lab(ROOT / "labs" / "builtin" / "first-container"))[0]


def post(client, url: str, data: dict | None = None, **extra):
    return client.post(url, data or {}, content_type="application/json", **extra)


def step_progress(user, key: str):
    from labs.models import StepProgress

    return StepProgress.objects.get(user=user, step__key=key)


# ---- Hints and solutions -----------------------------------------------------------------

def test_hints_are_revealed_one_at_a_time_in_order_and_counted(first_container, make_user, client):
    user = make_user()
    client.force_login(user)
    url = "/api/labs/first-container/steps/rootfs-without-kernel/hint"
    first = post(client, url, HTTP_ACCEPT_LANGUAGE="en").json()
    assert first["index"] == 0 and first["remaining"] == 1 and first["text"].startswith("Look at `ls /`")
    assert "<code>ls /</code>" in first["html"]
    second = post(client, url).json()
    assert second["index"] == 1 and second["remaining"] == 0
    assert step_progress(user, "rootfs-without-kernel").hints_used == 2
    more = client.post(url, {}, content_type="application/json", HTTP_ACCEPT_LANGUAGE="en")
    assert more.status_code == 409 and more.json()["error"] == "This step has no more hints."  # one language
    assert step_progress(user, "rootfs-without-kernel").hints_used == 2


def test_hints_follow_the_trainees_language_with_fallback(first_container, make_user, client):
    client.force_login(make_user())
    client.cookies["django_language"] = "zh-hans"
    zh = post(client, "/api/labs/first-container/steps/writable-layer/hint").json()
    assert zh["text"] == "`mkdir -p /opt && echo 'hello overlay' > /opt/hello.txt`"
    client.cookies["django_language"] = "en"
    assert post(client, "/api/labs/first-container/steps/image-layers/hint").json()["text"].startswith("`cat /var/lib/lab")


def test_the_solution_is_a_shell_script_given_on_request_and_logged(first_container, make_user, client):
    user = make_user()
    client.force_login(user)
    resp = post(client, "/api/labs/first-container/steps/writable-layer/solution")
    assert resp.json() == {"solution": "mkdir -p /opt\necho 'hello overlay' > /opt/hello.txt\n"}
    assert step_progress(user, "writable-layer").solution_used is True
    assert post(client, "/api/labs/first-container/steps/nope/solution").status_code == 404


# ---- Quizzes ---------------------------------------------------------------------------------

def test_single_choice_answers_are_graded_explained_and_recorded(first_container, make_user, client):
    from labs.models import QuizAnswer

    user = make_user()
    client.force_login(user)
    url = "/api/labs/first-container/steps/rootfs-without-kernel/answer"
    wrong = post(client, url, {"answer": "image"}, HTTP_ACCEPT_LANGUAGE="en").json()
    right = post(client, url, {"answer": "host"}, HTTP_ACCEPT_LANGUAGE="en").json()
    assert wrong["correct"] is False and right["correct"] is True
    assert right["explanation"].startswith("A container is a group of processes")
    assert [(a.answer, a.correct) for a in QuizAnswer.objects.filter(user=user)] == [("image", False), ("host", True)]
    # The step has a check: a right answer alone does not pass it.
    assert step_progress(user, "rootfs-without-kernel").passed_at is None
    assert post(client, url, {"answer": "kernel-of-nowhere"}).status_code == 400
    assert post(client, url, {}).status_code == 400


def test_multiple_choice_needs_exactly_the_right_set_and_passes_a_quiz_only_step(learning_lab, make_user, client):
    user = make_user()
    client.force_login(user)
    url = "/api/labs/learning/steps/pick-two/answer"
    assert post(client, url, {"answer": ["uts"]}).json()["correct"] is False
    assert post(client, url, {"answer": ["uts", "pid", "ext4"]}).json()["correct"] is False
    assert post(client, url, {"answer": ["pid", "uts"]}).json()["correct"] is True
    progress = step_progress(user, "pick-two")
    assert progress.passed_at is not None and progress.passed_by == "quiz"
    assert post(client, url, {"answer": "uts"}).status_code == 400  # a list is expected


def test_short_answers_are_matched_by_the_pattern_after_trimming(learning_lab, make_user, client):
    from labs.models import QuizAnswer

    client.force_login(make_user())
    url = "/api/labs/learning/steps/name-it/answer"
    assert post(client, url, {"answer": "ext4"}).json()["correct"] is False
    assert post(client, url, {"answer": "  OverlayFS "}).json() == {
        "correct": True, "explanation": "是 overlayfs。", "explanation_html": "是 overlayfs。"}
    assert list(QuizAnswer.objects.values_list("answer", "correct")) == [("ext4", False), ("  OverlayFS ", True)]
    assert post(client, "/api/labs/learning/steps/read-me/answer", {"answer": "x"}).status_code == 400


def test_the_page_and_api_never_carry_the_right_answers(first_container, make_user, client):
    client.force_login(make_user())
    detail = client.get("/api/labs/first-container/").json()
    quiz = detail["steps"][0]["quiz"]
    assert [c["id"] for c in quiz["choices"]] == ["image", "host", "runc"]
    assert "correct" not in json.dumps(detail) and "pattern" not in json.dumps(detail)
    html = client.get("/labs/first-container/").content.decode()
    assert "(?i)uts" not in html and "只在开机时用到" not in html  # no pattern, no explanation before answering
    assert "容器里 <code>uname -r</code> 报告的内核是谁的？" in html and "宿主机的内核：所有容器共享它" in html  # zh page
    client.cookies["django_language"] = "en"
    assert "Whose kernel does <code>uname -r</code> report" in client.get("/labs/first-container/").content.decode()


# ---- Progress ----------------------------------------------------------------------------------------

def test_progress_records_started_passed_how_and_when_and_completion(learning_lab, make_user, client):
    from labs.learning import progress_mark_passed
    from labs.models import Step

    user = make_user()
    client.force_login(user)
    before = client.get("/api/labs/learning/progress").json()
    assert before["started_at"] is None and before["current"] == "auto-file" and not before["completed"]
    here = post(client, "/api/labs/learning/progress").json()  # "I am here" starts the current step
    assert here["steps"][0]["started_at"] is not None and here["steps"][1]["started_at"] is None
    post(client, "/api/labs/learning/steps/auto-file/hint")
    progress_mark_passed(user=user, step=Step.objects.get(key="auto-file"), by="auto-check")
    post(client, "/api/labs/learning/steps/pick-two/answer", {"answer": ["uts", "pid"]})
    post(client, "/api/labs/learning/steps/name-it/answer", {"answer": "overlay"})
    mid = client.get("/api/labs/learning/progress").json()
    assert mid["current"] == "read-me" and mid["steps"][3]["started_at"] is not None  # started when it became current
    assert post(client, "/api/labs/learning/steps/pick-two/read").status_code == 409  # passed by its quiz
    done = post(client, "/api/labs/learning/steps/read-me/read").json()
    assert done["completed"] is True and done["steps_passed"] == done["steps_total"] == 4
    assert [s["passed_by"] for s in done["steps"]] == ["auto-check", "quiz", "quiz", "read"]
    assert done["steps"][0]["hints_used"] == 1 and done["steps"][0]["attempts"] == 0
    assert done["completed_at"] == max(s["passed_at"] for s in done["steps"])
    assert done["seconds"] is not None and all(s["seconds"] is not None for s in done["steps"])
    assert [p["lab"] for p in client.get("/api/progress/").json()] == ["learning"]


def test_a_trainee_sees_only_their_own_progress(learning_lab, first_container, make_user, client):
    alice, bob = make_user("alice"), make_user("bob")
    client.force_login(alice)
    post(client, "/api/labs/learning/steps/auto-file/hint")
    post(client, "/api/labs/learning/steps/pick-two/answer", {"answer": ["uts", "pid"]})
    other = Client()
    other.force_login(bob)
    assert other.get("/api/progress/").json() == []
    theirs = other.get("/api/labs/learning/progress", {"user": alice.id}).json()  # no way to ask for someone else
    assert theirs["started_at"] is None and all(s["hints_used"] == 0 and not s["passed"] for s in theirs["steps"])
    mine = client.get("/api/labs/learning/progress").json()
    assert mine["steps"][0]["hints_used"] == 1 and mine["steps"][1]["passed"]
    assert Client().get("/api/progress/").status_code == 401


def test_the_lab_page_remembers_hints_solution_answers_and_the_current_step(first_container, make_user, client):
    from labs.learning import progress_mark_passed
    from labs.models import Step

    user = make_user()
    client.force_login(user)
    client.cookies["django_language"] = "en"
    progress_mark_passed(user=user, step=Step.objects.get(key="rootfs-without-kernel"), by="check")
    post(client, "/api/labs/first-container/steps/image-layers/hint")
    post(client, "/api/labs/first-container/steps/image-layers/solution")
    post(client, "/api/labs/first-container/steps/image-layers/answer", {"answer": ["diff-id", "shared"]})
    html = client.get("/labs/first-container/").content.decode()
    step = re.search(r'<details class="step card[^"]*" id="step-image-layers"[^>]*>', html).group(0)
    assert " open" in step and 'data-hints-used="1"' in step
    assert 'data-passed="true"' in re.search(r'<details[^>]*id="step-rootfs-without-kernel"[^>]*>', html).group(0)
    assert "<code>cat /var/lib/lab/image.json</code>" in html  # the revealed hint
    assert "| head -n 1 &gt; /root/answers/layer" in html  # the solution, escaped
    assert re.search(r'value="diff-id" data-testid="choice-image-layers-diff-id" checked', html)
    assert "A layer is only a changeset" in html  # the explanation of the right answer
    page_data = json.loads(re.search(r'<script id="page-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert page_data["progress"]["current"] == "image-layers" and page_data["solution_after"] == 3


# ---- Preview and upload ---------------------------------------------------------------------------------

@pytest.fixture
def unpublished(learning_lab):
    learning_lab.published = False
    learning_lab.save()
    return learning_lab


def test_unpublished_labs_are_previewed_by_their_author_and_admins_only(unpublished, make_user, client):
    from django.contrib.auth.models import Group

    trainee, author, other, staff = make_user("trainee"), make_user("author"), make_user("other"), make_user("staff")
    group = Group.objects.get_or_create(name="instructors")[0]
    author.groups.add(group)
    other.groups.add(group)
    staff.is_staff = True
    staff.save()
    unpublished.owner = author
    unpublished.save()
    for user in (trainee, other):
        client.force_login(user)
        assert client.get("/labs/learning/").status_code == 404
        assert client.get("/labs/learning/preview/").status_code == 404
        assert post(client, "/api/labs/learning/steps/name-it/answer", {"answer": "overlay"}).status_code == 404
        assert client.get("/api/labs/learning/progress").status_code == 404
        assert client.get("/api/labs/learning/").status_code == 404
        assert client.post("/labs/learning/publish").status_code == 404
    for user in (author, staff):
        client.force_login(user)
        page = client.get("/labs/learning/preview/")
        assert page.status_code == 200 and 'data-testid="preview-banner"' in page.content.decode()
        assert post(client, "/api/labs/learning/steps/name-it/answer", {"answer": "overlay"}).json()["correct"]
    assert client.post("/labs/learning/publish").status_code == 302
    for user in (trainee, other):
        client.force_login(user)
        assert client.get("/labs/learning/").status_code == 200


def tar_gz(files: dict[str, bytes], *, extra=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra:
            tar.addfile(extra)
    return buf.getvalue()


def lab_files(root: str = "learning/") -> dict[str, bytes]:
    return {root + str(p.relative_to(FIXTURE)): p.read_bytes() for p in FIXTURE.rglob("*") if p.is_file()}


def upload(client, name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.labs.test_authoring import upload_finish

    return upload_finish(client, client.post("/labs/upload/", {"archive": SimpleUploadedFile(name, data)}))


@pytest.fixture
def staff_client(make_user, client):
    user = make_user("staff")
    user.is_staff = True
    user.save()
    client.force_login(user)
    return client


def test_staff_upload_a_tar_gz_lab_that_is_imported_unpublished_and_stored(staff_client, make_user):
    from labs.models import Lab

    resp = upload(staff_client, "learning.tar.gz", tar_gz(lab_files()))
    assert resp.status_code == 302 and resp["Location"] == "/labs/learning/preview/"
    lab = Lab.objects.get(slug="learning")
    assert lab.published is False and lab.steps.count() == 4
    stored = Path(settings.LAB_DATA_DIR) / "labs" / "learning"
    assert (stored / "lab.yaml").read_bytes() == (FIXTURE / "lab.yaml").read_bytes()
    assert lab.source == str(stored)
    assert not [p for p in stored.parent.iterdir() if p.name.startswith(".upload-")]  # nothing half-built left
    trainee = Client()
    trainee.force_login(make_user("trainee"))
    assert trainee.get("/labs/upload/").status_code == 404
    assert upload(trainee, "learning.tar.gz", tar_gz(lab_files())).status_code == 404


def test_a_zip_upload_works_too(staff_client):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in lab_files("").items():
            z.writestr(name, data)
    assert upload(staff_client, "lab.zip", buf.getvalue()).status_code == 302


def test_unsafe_archives_are_refused_and_leave_nothing(staff_client):
    from labs.models import Lab

    link = tarfile.TarInfo("learning/steps/evil")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    cases = {
        "../": tar_gz({"../escape.txt": b"x", **lab_files()}),
        "absolute": tar_gz({"/tmp/escape.txt": b"x", **lab_files()}),
        "link": tar_gz(lab_files(), extra=link),
        "10 MB": tar_gz({**lab_files(), "learning/big.bin": b"\0" * (10 * 1024 * 1024 + 1)}),
        "expected a .tar.gz": b"plain text",
    }
    labs_dir = Path(settings.LAB_DATA_DIR) / "labs"
    before = sorted(labs_dir.iterdir()) if labs_dir.exists() else []
    for needle, data in cases.items():
        resp = upload(staff_client, "lab.tar.gz" if needle != "expected a .tar.gz" else "lab.txt", data)
        assert resp.status_code == 400 and needle in resp.content.decode(), needle
    assert not Lab.objects.exists()
    assert (sorted(labs_dir.iterdir()) if labs_dir.exists() else []) == before  # nothing stored, nothing half-built
    assert not Path("/tmp/escape.txt").exists()


def test_an_invalid_lab_shows_every_error_as_file_line_column(staff_client):
    files = lab_files()
    files["learning/lab.yaml"] = files["learning/lab.yaml"].replace(b"level: beginner", b"level: expert").replace(
        b"minutes: 5", b"minutes: many")
    resp = upload(staff_client, "lab.tar.gz", tar_gz(files))
    body = resp.content.decode()
    assert resp.status_code == 400
    errors = re.findall(r"<li>(lab\.yaml:\d+:\d+: [^<]+)</li>", body)
    assert len(errors) == 2, body
    assert any(e.startswith("lab.yaml:5:") and "level" in e for e in errors)
    assert any(e.startswith("lab.yaml:6:") and "minutes" in e for e in errors)


# ---- Static and i18n ---------------------------------------------------------------------------------------

def test_highlight_css_is_the_pygments_css_of_the_code_blocks():
    from labs.markdown import pygments_css

    css = (ROOT / "static" / "labs" / "highlight.css").read_text()
    assert css.split("\n", 1)[1] == pygments_css("github-dark")


def test_every_ui_string_of_the_templates_has_a_chinese_translation():
    from django.utils import translation

    missing = set()
    with translation.override("zh-hans"):
        for template in (ROOT / "templates").rglob("*.html"):
            for found in re.findall(r"""{% translate (?:"([^"]+)"|'([^']+)')""", template.read_text()):
                msgid = found[0] or found[1]
                if translation.gettext(msgid) == msgid and not re.search(r"[\u4e00-\u9fff]", msgid):
                    missing.add(f"{template.name}: {msgid}")
    assert not missing, sorted(missing)


# ---- Auto-check and the session-scoped API (real sandboxes) ------------------------------------------------

def _start(client, slug: str) -> dict:
    from tests.labs.test_sessions import start_session

    return start_session(client, slug)


@sandboxed
def test_auto_check_passes_the_current_step_in_the_background_and_tells_the_page(
        worker, web, learning_lab, make_user, client, settings):
    from labs.models import StepProgress
    from labs.hostconfig import host_config
    from sandbox.service import sandbox_exec
    from tests.labs.test_sessions import ws_connect

    settings.LAB_AUTO_CHECK_SECONDS = 1
    user = make_user()
    client.force_login(user)
    session = _start(client, "learning")
    with ws_connect(web, client, session["ws"]) as ws:
        post(client, "/api/labs/learning/progress")  # the page says "I am here": polling starts
        assert sandbox_exec(host_config(), session["id"], "touch /root/auto", timeout=5).exit_code == 0
        event = None
        while event is None:
            msg = ws.recv(timeout=20)
            if isinstance(msg, str) and json.loads(msg)["type"] == "check":
                event = json.loads(msg)
    assert event == {"type": "check", "step": "auto-file", "passed": True, "message": "found /root/auto", "by": "auto-check"}
    progress = StepProgress.objects.get(user=user, step__key="auto-file")
    assert progress.passed_by == "auto-check" and progress.attempts == 0  # polls are not the trainee's attempts
    from labs.redis import sync_redis

    # The next step has no auto-check: the poll chain ends and lets go of its lease.
    wait_for(lambda: not sync_redis().exists(f"lab:autocheck:{session['id']}"), timeout=10, what="lease released")


@sandboxed
def test_auto_check_is_not_polled_for_steps_without_it_nor_for_sessions_not_ready(
        worker, learning_lab, make_user, client, settings):
    from labs.learning import autocheck_kick
    from labs.models import Session
    from tests.labs.test_sessions import smoke_lab  # noqa: F401

    settings.LAB_AUTO_CHECK_SECONDS = 1
    client.force_login(make_user())
    session = Session.objects.get(id=_start(client, "learning")["id"])
    from labs.redis import sync_redis

    # the sandbox becoming ready started the poll chain; a kick never starts a second
    from tests.conftest import wait_for

    wait_for(lambda: sync_redis().exists(f"lab:autocheck:{session.id}"), what="the poll chain the start began")
    assert autocheck_kick(session=session) is False  # one poll chain per session
    Session.objects.filter(id=session.id).update(state="stopping")
    session.refresh_from_db()
    assert autocheck_kick(session=session) is False


@sandboxed
def test_session_hint_solution_and_answer_routes_act_for_the_sessions_owner_only(
        worker, first_container, make_user, client):
    owner = make_user("owner")
    client.force_login(owner)
    sid = _start(client, "first-container")["id"]
    assert post(client, f"/api/sessions/{sid}/hint", {"step": "writable-layer"}).json()["remaining"] == 0
    assert "hello overlay" in post(client, f"/api/sessions/{sid}/solution", {"step": "writable-layer"}).json()["solution"]
    assert post(client, f"/api/sessions/{sid}/answer", {"step": "writable-layer", "answer": "original"}).json()["correct"]
    progress = step_progress(owner, "writable-layer")
    assert progress.hints_used == 1 and progress.solution_used
    intruder = Client()
    intruder.force_login(make_user("intruder"))
    for action in ("hint", "solution", "answer"):
        assert post(intruder, f"/api/sessions/{sid}/{action}", {"step": "writable-layer", "answer": "x"}).status_code == 404


@sandboxed
def test_reset_does_not_replay_old_keystrokes_into_the_fresh_shell(worker, web, first_container, make_user, client):
    from tests.labs.test_sessions import Terminal, ws_connect

    client.force_login(make_user())
    session = _start(client, "first-container")
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        term.send("touch /root/marker; echo made-$((1+1))\r")
        term.expect("made-2")
        assert post(client, f"/api/sessions/{session['id']}/reset").status_code == 202
        wait_for(lambda: term.poll() or any(c.get("state") == "ready" for c in term.control[1:]), timeout=30,
                 what="ready again")
        term.send("test -e /root/marker && echo still-$((1+1)) || echo gone-$((2+2))\r")
        seen = len(term.out)
        wait_for(lambda: term.poll() or re.search(rb"\r\n(still-2|gone-4)\r\n", term.out[seen:]), timeout=10,
                 what="the answer")
        assert b"\r\ngone-4\r\n" in term.out[seen:]


def test_an_uploaded_lab_keeps_its_wrong_answers_and_a_bad_one_is_reported(staff_client):
    from labs.models import Lab

    files = lab_files()
    good = files["learning/lab.yaml"].replace(b"    auto_check: true\n", (
        "    auto_check: true\n    wrong:\n      - script: mkdir /root/auto.d\n"
        "        why: {zh-hans: 名字不对。, en: The wrong name.}\n").encode())
    assert good != files["learning/lab.yaml"]
    assert upload(staff_client, "lab.tar.gz", tar_gz({**files, "learning/lab.yaml": good})).status_code == 302
    step = Lab.objects.get(slug="learning").steps.get(key="auto-file")
    assert step.data["wrong"] == [{"script": "mkdir /root/auto.d", "why": {"zh-hans": "名字不对。", "en": "The wrong name."}}]
    bad = good.replace(b"        why: {zh-hans", b"        wy: {zh-hans")
    resp = upload(staff_client, "lab.tar.gz", tar_gz({**files, "learning/lab.yaml": bad}))
    assert resp.status_code == 400 and "unknown key &#x27;wy&#x27; (did you mean &#x27;why&#x27;?)" in resp.content.decode()
