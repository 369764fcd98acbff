"""Cohorts through the API and pages: create, join, progress, CSV, permissions, admin."""
from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.cohorts.conftest import make_instructor, signed_in

pytestmark = pytest.mark.django_db(transaction=True)


def _progress(user, step, *, attempts: int, started_ago: timedelta, passed_ago: timedelta | None = None, hints: int = 0):
    from labs.models import StepProgress

    now = timezone.now()
    p = StepProgress.objects.create(user=user, step=step, attempts=attempts, hints_used=hints)
    StepProgress.objects.filter(id=p.id).update(  # started_at is auto_now_add
        started_at=now - started_ago, passed_at=now - passed_ago if passed_ago is not None else None,
        passed_by="check" if passed_ago is not None else "")
    return p


def test_an_instructor_creates_a_cohort_and_gets_an_invite_code(smoke_lab):
    client = signed_in(make_instructor())
    resp = client.post("/api/cohorts/", {"name": "Week 1", "labs": ["smoke"], "due": {"smoke": "2030-01-02T10:00:00Z"}},
                       content_type="application/json")
    assert resp.status_code == 201, resp.content
    data = resp.json()
    assert data["name"] == "Week 1" and len(data["invite_code"]) == 8
    assert data["labs"] == [{"slug": "smoke", "due_at": "2030-01-02T10:00:00+00:00"}]
    assert data["invite_url"] == f"/cohorts/join/{data['invite_code']}/"


def test_a_trainee_cannot_create_a_cohort_and_unknown_labs_are_named(smoke_lab, make_user):
    trainee = signed_in(make_user("ada"))
    assert trainee.post("/api/cohorts/", {"name": "x", "labs": []}, content_type="application/json").status_code == 403
    teacher = signed_in(make_instructor())
    resp = teacher.post("/api/cohorts/", {"name": "x", "labs": ["smoke", "nope"]}, content_type="application/json")
    assert resp.status_code == 404 and "nope" in resp.json()["error"]
    assert teacher.post("/api/cohorts/", {"name": " ", "labs": []}, content_type="application/json").status_code == 400


def test_staff_are_instructors_without_the_group(smoke_lab):
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_user("root", password="x", is_staff=True)
    resp = signed_in(staff).post("/api/cohorts/", {"name": "Ops", "labs": ["smoke"]}, content_type="application/json")
    assert resp.status_code == 201


def test_a_trainee_joins_with_the_code_in_any_case_and_bad_or_closed_codes_are_refused(klass, make_user):
    from cohorts.models import Membership

    bob = signed_in(make_user("bob"))
    assert bob.post("/api/cohorts/join", {"code": "NOPE2345"}, content_type="application/json").status_code == 404
    resp = bob.post("/api/cohorts/join", {"code": f" {klass.cohort.invite_code.lower()} "}, content_type="application/json")
    assert resp.status_code == 200 and resp.json()["joined"] is True and "invite_code" not in resp.json()
    assert Membership.objects.get(cohort=klass.cohort, user__username="bob").role == "trainee"
    again = bob.post("/api/cohorts/join", {"code": klass.cohort.invite_code}, content_type="application/json")
    assert again.status_code == 200 and again.json()["joined"] is False
    klass.teacher_client.post(f"/cohorts/{klass.cohort.id}/manage", {"action": "close"})
    late = signed_in(make_user("late"))
    assert late.post("/api/cohorts/join", {"code": klass.cohort.invite_code}, content_type="application/json").status_code == 409


def test_the_invite_link_asks_then_joins_and_lands_on_the_cohort(klass, make_user):
    carol = signed_in(make_user("carol"))
    link = f"/cohorts/join/{klass.cohort.invite_code}/"
    assert klass.cohort.invite_code in carol.get(link).content.decode()
    resp = carol.post(link)
    assert resp.status_code == 302 and resp["Location"] == f"/cohorts/{klass.cohort.id}/"
    assert carol.get(resp["Location"]).status_code == 200


def test_progress_has_state_attempts_hints_and_seconds_per_trainee_lab_step(klass, make_user, smoke_lab):
    from cohorts.services import cohort_join

    make, hangs = smoke_lab.steps.get(key="make-file"), smoke_lab.steps.get(key="hangs")
    _progress(klass.trainee, make, attempts=2, hints=1, started_ago=timedelta(minutes=5), passed_ago=timedelta(minutes=2))
    _progress(klass.trainee, hangs, attempts=4, started_ago=timedelta(minutes=1))
    stuck = make_user("stuck")
    cohort_join(user=stuck, code=klass.cohort.invite_code)
    _progress(stuck, make, attempts=3, started_ago=timedelta(minutes=11))
    data = klass.teacher_client.get(f"/api/cohorts/{klass.cohort.id}/progress").json()
    assert [s["key"] for s in data["labs"][0]["steps"]] == ["make-file", "hangs"]
    rows = {r["username"]: r["labs"][0]["steps"] for r in data["progress"]}
    ada_make, ada_hangs = rows["ada"]
    assert (ada_make["state"], ada_make["attempts"], ada_make["hints"]) == ("passed", 2, 1)
    assert 175 <= ada_make["seconds"] <= 185
    # Started when make-file passed (2 min ago): 4 failed checks, but not 10 minutes yet.
    assert ada_hangs["state"] == "working" and 115 <= ada_hangs["seconds"] <= 125
    assert rows["stuck"][0]["state"] == "stuck" and rows["stuck"][1]["state"] == "not_started"
    funnel = data["stats"]["smoke"]["steps"]
    assert [(s["reached"], s["passed"]) for s in funnel] == [(2, 1), (1, 0)]
    assert funnel[0]["median_attempts"] == 2 and funnel[0]["states"]["stuck"] == 1


def test_stuck_needs_both_enough_failed_checks_and_enough_time(klass, smoke_lab):
    from cohorts.selectors import cohort_progress

    make = smoke_lab.steps.get(key="make-file")
    p = _progress(klass.trainee, make, attempts=2, started_ago=timedelta(minutes=30))

    def state():
        return cohort_progress(cohort=klass.cohort)["progress"][0]["labs"][0]["steps"][0]["state"]

    assert state() == "working"  # long, but only 2 failed checks
    p.attempts = 3
    p.save(update_fields=["attempts"])
    assert state() == "stuck"
    type(p).objects.filter(id=p.id).update(started_at=timezone.now() - timedelta(minutes=9))
    assert state() == "working"  # 3 failed checks, but under 10 minutes


def test_the_csv_export_has_the_same_numbers_as_the_api(klass, smoke_lab):
    _progress(klass.trainee, smoke_lab.steps.get(key="make-file"), attempts=3, hints=2, started_ago=timedelta(minutes=3))
    resp = klass.teacher_client.get(f"/cohorts/{klass.cohort.id}/progress.csv")
    assert resp.status_code == 200 and resp["Content-Type"].startswith("text/csv")
    assert resp.content.startswith("\ufeff".encode())  # the BOM that makes Excel read UTF-8
    rows = list(csv.DictReader(io.StringIO(resp.content.decode("utf-8-sig"))))
    assert [(r["username"], r["lab"], r["step"], r["state"], r["attempts"], r["hints"]) for r in rows] == [
        ("ada", "smoke", "make-file", "working", "3", "2"), ("ada", "smoke", "hangs", "not_started", "0", "0")]
    assert rows[0]["step_title"] == "建一个文件"  # step titles, in Chinese, as Excel will show them
    assert 170 <= int(rows[0]["seconds"]) <= 190


def test_the_trainees_own_cohort_page_shows_step_titles(klass, smoke_lab):
    _progress(klass.trainee, smoke_lab.steps.get(key="make-file"), attempts=3, hints=2, started_ago=timedelta(minutes=3))
    page = klass.trainee_client.get(f"/cohorts/{klass.cohort.id}/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    row = page[page.index('data-testid="my-step-make-file"'):]
    row = row[:row.index("</tr>")]
    assert "1. Make a file" in row and "<td>3</td><td>2</td>" in row.replace("\n", "").replace(" ", "")
    assert "2. A check that never ends" in page


def test_a_trainee_sees_only_their_own_progress(klass, make_user, smoke_lab):
    from cohorts.services import cohort_join

    bob = make_user("bob")
    cohort_join(user=bob, code=klass.cohort.invite_code)
    _progress(bob, smoke_lab.steps.get(key="make-file"), attempts=7, started_ago=timedelta(minutes=1))
    data = klass.trainee_client.get(f"/api/cohorts/{klass.cohort.id}/progress").json()
    assert [r["username"] for r in data["progress"]] == ["ada"] and "stats" not in data
    page = klass.trainee_client.get(f"/cohorts/{klass.cohort.id}/").content.decode()
    assert "my-progress-smoke" in page and "bob" not in page and klass.cohort.invite_code not in page
    csv_text = klass.trainee_client.get(f"/cohorts/{klass.cohort.id}/progress.csv").content.decode()
    assert "ada" in csv_text and "bob" not in csv_text
    cid = klass.cohort.id
    assert klass.trainee_client.post(f"/cohorts/{cid}/manage", {"action": "new_code"}).status_code == 403
    assert klass.trainee_client.post(f"/api/cohorts/{cid}/labs", {"lab": "smoke"}, content_type="application/json").status_code == 403
    listing = klass.trainee_client.get("/api/cohorts/").json()
    assert listing["teaching"] == [] and [c["id"] for c in listing["joined"]] == [cid]


def test_an_instructor_sees_only_their_cohorts_and_admins_see_everything(klass, make_user):
    from django.contrib.auth import get_user_model

    other = signed_in(make_instructor("other-teacher"))
    stranger = signed_in(make_user("stranger"))
    cid = klass.cohort.id
    for client in (other, stranger):
        assert client.get(f"/cohorts/{cid}/").status_code == 403
        assert client.get(f"/api/cohorts/{cid}/progress").status_code == 403
        assert client.get(f"/cohorts/{cid}/progress.csv").status_code == 403
        assert client.post(f"/cohorts/{cid}/manage", {"action": "new_code"}).status_code == 403
        assert client.post(f"/api/cohorts/{cid}/sessions/abc123abc123/stop").status_code == 403
        assert client.get(f"/cohorts/{cid}/watch/abc123abc123/").status_code == 403
    assert other.get("/api/cohorts/").json()["teaching"] == []
    assert other.get("/api/cohorts/999999/progress").status_code == 404
    admin = signed_in(get_user_model().objects.create_superuser("admin", "a@example.org", "x"))
    assert admin.get(f"/cohorts/{cid}/").status_code == 200
    assert [r["username"] for r in admin.get(f"/api/cohorts/{cid}/progress").json()["progress"]] == ["ada"]
    assert [c["id"] for c in admin.get("/api/cohorts/").json()["teaching"]] == [cid]
    page = klass.teacher_client.get(f"/cohorts/{cid}/").content.decode()
    assert 'id="cohort-data"' in page and klass.cohort.invite_code in page


def test_assigning_a_lab_with_a_due_date_and_a_new_code(klass, smoke_lab):
    from cohorts.models import CohortLab

    cid, old = klass.cohort.id, klass.cohort.invite_code
    resp = klass.teacher_client.post(f"/api/cohorts/{cid}/labs", {"lab": "smoke", "due_at": "2031-05-06T07:08:00+00:00"},
                                     content_type="application/json")
    assert resp.status_code == 200 and resp.json()["labs"][0]["due_at"] == "2031-05-06T07:08:00+00:00"
    klass.teacher_client.post(f"/cohorts/{cid}/manage", {"action": "assign", "lab": "smoke", "due_at": "2032-01-01T09:00"})
    assert CohortLab.objects.get(cohort_id=cid).due_at.year == 2032
    klass.teacher_client.post(f"/cohorts/{cid}/manage", {"action": "new_code"})
    klass.cohort.refresh_from_db()
    assert klass.cohort.invite_code != old


def test_quiz_answers_are_counted_by_latest_answer_per_trainee(klass, smoke_lab):
    from django.apps import apps

    from cohorts.selectors import quiz_distribution

    try:
        QuizAnswer = apps.get_model("labs", "QuizAnswer")
    except LookupError:
        assert quiz_distribution(cohort=klass.cohort) == {"available": False, "steps": []}
        return
    step = smoke_lab.steps.get(key="make-file")
    step.data["quiz"] = {"kind": "single", "question": {"en": "Which?"},
                         "choices": [{"id": "a", "text": {"en": "A"}, "correct": True}, {"id": "b", "text": {"en": "B"}, "correct": False}]}
    step.save()
    QuizAnswer.objects.create(user=klass.trainee, step=step, answer="b", correct=False)
    QuizAnswer.objects.create(user=klass.trainee, step=step, answer="a", correct=True)
    dist = quiz_distribution(cohort=klass.cohort, lang="en")
    assert dist["available"] is True
    (q,) = dist["steps"]
    assert [(c["id"], c["count"]) for c in q["choices"]] == [("a", 1), ("b", 0)]
    assert (q["answered"], q["correct"]) == (1, 1)


def test_the_django_admin_covers_every_cohorts_model(klass):
    from django.contrib.auth import get_user_model

    admin = signed_in(get_user_model().objects.create_superuser("admin", "a@example.org", "x"))
    for model in ("cohort", "cohortlab", "membership"):
        assert admin.get(f"/admin/cohorts/{model}/").status_code == 200
        assert admin.get(f"/admin/cohorts/{model}/add/").status_code == 200
    assert admin.get(f"/admin/cohorts/cohort/{klass.cohort.id}/change/").status_code == 200


def test_the_sandbox_overview_is_for_admins_and_lists_the_last_days_failures(klass, smoke_lab):
    from django.contrib.auth import get_user_model

    from labs.models import Session

    Session.objects.create(user=klass.trainee, lab=smoke_lab, host="gone", state="lost", message="worker went away",
                           ended_at=timezone.now() - timedelta(hours=1))
    Session.objects.create(user=klass.trainee, lab=smoke_lab, host="gone", state="failed", message="old news",
                           ended_at=timezone.now() - timedelta(hours=30))
    assert klass.teacher_client.get("/ops/sandboxes/").status_code == 403
    assert klass.teacher_client.get("/api/ops/sandboxes").status_code == 403
    admin = signed_in(get_user_model().objects.create_user("ops", password="x", is_staff=True))
    data = admin.get("/api/ops/sandboxes").json()
    assert [f["message"] for f in data["failures"]] == ["worker went away"]
    page = admin.get("/ops/sandboxes/").content.decode()
    assert "worker went away" in page and "old news" not in page


def test_a_failing_dashboard_update_never_fails_the_trainees_check(klass, smoke_lab, monkeypatch):
    from labs.progress import CheckResult, progress_record_check
    from labsite.celery import app

    def broken(*args, **kwargs):
        raise RuntimeError("broker down")

    monkeypatch.setattr(app, "send_task", broken)
    progress = progress_record_check(user=klass.trainee, step=smoke_lab.steps.get(key="make-file"),
                                     result=CheckResult(passed=True, message="ok"), by="check")
    assert progress.attempts == 1 and progress.passed_at is not None


def test_the_management_command_makes_a_user_an_instructor(make_user):
    from django.core.management import CommandError, call_command

    from cohorts.selectors import is_instructor

    user = make_user("newteacher")
    assert not is_instructor(user)
    call_command("cohorts", "instructor", "newteacher")
    assert is_instructor(user)
    with pytest.raises(CommandError, match="nobody"):
        call_command("cohorts", "instructor", "nobody")


def test_a_co_instructor_runs_the_cohort_but_a_trainee_of_it_does_not(klass, make_user):
    from cohorts.models import Membership
    from cohorts.selectors import instructor_can_watch, teaches

    helper = make_user("helper")
    Membership.objects.create(cohort=klass.cohort, user=helper, role=Membership.Role.INSTRUCTOR)
    assert teaches(user=helper, cohort=klass.cohort)
    assert signed_in(helper).get(f"/api/cohorts/{klass.cohort.id}/progress").json()["stats"]
    lab_id = klass.cohort.assignments.get().lab_id
    assert instructor_can_watch(instructor=helper, trainee_id=klass.trainee.id, lab_id=lab_id)
    assert not instructor_can_watch(instructor=klass.trainee, trainee_id=klass.trainee.id, lab_id=lab_id)
    assert not teaches(user=klass.trainee, cohort=klass.cohort)


def test_cgroup_numbers_come_from_the_sandboxs_v1_directories_or_are_remote(tmp_path):
    from cohorts.sandboxes import sandbox_cgroup

    for controller, name, value in [("memory", "memory.usage_in_bytes", "3145728"), ("memory", "memory.limit_in_bytes", "134217728"),
                                    ("cpuacct", "cpuacct.usage", "2500000000"), ("pids", "pids.current", "4")]:
        d = tmp_path / controller / "container-lab" / "h1" / "abc"
        d.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(value + "\n")
    assert sandbox_cgroup(host="h1", sid="abc", root=tmp_path) == {
        "memory_bytes": 3145728, "memory_limit": 134217728, "memory_mib": 3.0, "memory_limit_mib": 128,
        "cpu_seconds": 2.5, "pids": 4}
    assert sandbox_cgroup(host="elsewhere", sid="abc", root=tmp_path) is None


def test_the_watch_view_shows_the_trainees_step_last_check_and_hints(klass, smoke_lab):
    from labs.models import Session, StepProgress

    session = Session.objects.create(user=klass.trainee, lab=smoke_lab, host="h1", state="ready")
    make = smoke_lab.steps.get(key="make-file")
    p = _progress(klass.trainee, make, attempts=2, hints=0, started_ago=timedelta(minutes=3))
    StepProgress.objects.filter(pk=p.pk).update(last_message="no /root/done yet")
    url = f"/api/cohorts/{klass.cohort.id}/sessions/{session.id}/context"
    ctx = klass.teacher_client.get(url, HTTP_ACCEPT_LANGUAGE="en").json()
    assert ctx["step"] == {"key": "make-file", "title": "Make a file", "number": 1, "of": 2}
    assert ctx["last_check"] == {"step": "make-file", "title": "Make a file", "passed": False,
                                 "message": "no /root/done yet", "attempts": 2}
    StepProgress.objects.filter(pk=p.pk).update(passed_at=timezone.now(), attempts=3, last_message="found /root/done")
    ctx = klass.teacher_client.get(url, HTTP_ACCEPT_LANGUAGE="en").json()
    assert ctx["step"]["key"] == "hangs" and ctx["last_check"]["passed"] is True
    assert ctx["last_check"]["message"] == "found /root/done"
    page = klass.teacher_client.get(f"/cohorts/{klass.cohort.id}/watch/{session.id}/", HTTP_ACCEPT_LANGUAGE="en")
    html = page.content.decode()
    assert 'data-testid="watch-step">2 / 2 · A check that never ends' in html and "found /root/done" in html
    other = signed_in(make_instructor("other-teacher"))
    assert other.get(url).status_code == 403 and klass.trainee_client.get(url).status_code == 403


def test_the_replay_timeline_has_markers_at_checks_and_step_changes_and_the_stuck_moment(klass, smoke_lab, settings):
    from labs.models import Session
    from labs.progress import CheckResult, progress_record_check

    settings.COHORT_STUCK_ATTEMPTS, settings.COHORT_STUCK_MINUTES = 3, 0
    session = Session.objects.create(user=klass.trainee, lab=smoke_lab, host="h1", state="ready")
    make = smoke_lab.steps.get(key="make-file")
    for passed in (False, False, False, True):
        progress_record_check(user=klass.trainee, step=make, result=CheckResult(passed=passed, message=""), by="check")
    url = f"/api/sessions/{session.id}/markers"
    data = klass.teacher_client.get(url, HTTP_ACCEPT_LANGUAGE="en").json()  # the cohort's instructor
    kinds = [(m["kind"], m["step"]) for m in data["markers"]]
    assert kinds.count(("fail", "make-file")) == 3 and ("pass", "make-file") in kinds and ("step", "make-file") in kinds
    fails = [m["at"] for m in data["markers"] if m["kind"] == "fail"]
    assert data["stuck_at"] == fails[2]  # the third failed check, at least 0 minutes in
    assert klass.trainee_client.get(url).status_code == 200  # their own
    other = signed_in(make_instructor("other-teacher"))
    assert other.get(url).status_code == 404
    settings.COHORT_STUCK_MINUTES = 10
    assert klass.teacher_client.get(url).json()["stuck_at"] is None  # passed before 10 minutes were up


def test_an_error_is_in_the_readers_language_only(klass, make_user):
    """Services write both texts side by side (labs.i18n.say); the answer carries one."""
    bob = signed_in(make_user("bob"))
    zh = bob.post("/api/cohorts/join", {"code": "NOPE2345"}, content_type="application/json", HTTP_ACCEPT_LANGUAGE="zh-CN")
    en = bob.post("/api/cohorts/join", {"code": "NOPE2345"}, content_type="application/json", HTTP_ACCEPT_LANGUAGE="en-US")
    assert zh.status_code == en.status_code == 404
    zh_text, en_text = (r.json().get("error") or r.json().get("message") or r.json().get("detail") for r in (zh, en))
    assert zh_text == "邀请码无效。"
    assert en_text == "That invite code is not valid; check it with your instructor."
