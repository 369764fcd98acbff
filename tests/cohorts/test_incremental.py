"""Dashboards stay cheap for a class of hundreds: an event (a check, a hint, an answer, a
join) is published after commit as a Celery task sent by name, and the task reads the
changed trainee's row alone, with the same database work for a cohort of 3 and of 300."""
from __future__ import annotations

import re

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.cohorts.conftest import make_instructor

pytestmark = [pytest.mark.django_db(transaction=True)]


def cohort_of(size: int, lab, name: str):
    """A cohort of `size` trainees of `lab`, each with progress on every step; (cohort, first trainee)."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from cohorts.models import Membership
    from cohorts.services import cohort_create
    from labs.models import StepProgress

    User = get_user_model()
    teacher = make_instructor(f"teacher-{name}")
    cohort = cohort_create(owner=teacher, name=name, lab_slugs=[lab.slug])
    users = User.objects.bulk_create([User(username=f"{name}-{i}") for i in range(size)])
    users = list(User.objects.filter(username__startswith=f"{name}-").order_by("id"))
    Membership.objects.bulk_create([Membership(cohort=cohort, user=u) for u in users])
    steps = list(lab.steps.all())
    StepProgress.objects.bulk_create([StepProgress(user=u, step=s, attempts=i % 5, hints_used=1,
                                                   passed_at=timezone.now() if i % 2 else None)
                                      for i, u in enumerate(users) for s in steps])
    return cohort, users[0]


def listen(group: str):
    """A channel-layer channel in `group`; returns a function reading its next event."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)

    def receive() -> dict:
        return async_to_sync(layer.receive)(channel)["event"]

    return receive


def notify_queries(cohort, user, lab) -> tuple[int, list[str], dict]:
    from cohorts.services import cohort_group, dashboards_notify

    receive = listen(cohort_group(cohort.id))
    with CaptureQueriesContext(connection) as ctx:
        told = dashboards_notify(user_id=user.id, lab_id=lab.id)
    assert told == 1
    return len(ctx.captured_queries), [q["sql"] for q in ctx.captured_queries], receive()


def test_an_event_costs_the_same_queries_for_a_cohort_of_3_and_of_300(smoke_lab):
    small, small_user = cohort_of(3, smoke_lab, "small")
    large, large_user = cohort_of(300, smoke_lab, "large")
    n_small, _, event = notify_queries(small, small_user, smoke_lab)
    n_large, sql, event_large = notify_queries(large, large_user, smoke_lab)
    assert n_small == n_large <= 10, sql
    # Every query of progress, sessions or memberships is about that one trainee: none reads the cohort.
    for q in sql:
        if any(table in q for table in ("labs_stepprogress", "labs_session", "cohorts_membership")):
            assert re.search(rf'"user_id" = {large_user.id}\b', q), q
    assert event_large["type"] == "row" and event_large["user"] == large_user.id and event_large["lab"] == "smoke"
    assert [c["step"] for c in event_large["row"]["steps"]] == ["make-file", "hangs"]
    assert event["row"]["steps"][0]["hints"] == 1
    assert "stats" not in event_large  # the page recomputes the lab's numbers from its rows


def _clear_marks() -> None:
    from labs.events import DIRTY_KEY, FLUSH_KEY
    from labs.redis import sync_redis

    sync_redis().delete(DIRTY_KEY, FLUSH_KEY)


def test_a_trainees_action_does_no_dashboard_work_on_the_request_path_and_publishes_one_task_by_name(
        smoke_lab, monkeypatch):
    from labs.events import DIRTY_KEY, dirty_member
    from labs.redis import sync_redis
    from labs.progress import CheckResult, progress_record_check
    from labsite.celery import app

    sent: list[tuple[str, dict]] = []
    real_send = app.send_task

    def recording_send(name, *args, **kwargs):
        sent.append((name, kwargs.get("kwargs") or {}))
        return real_send(name, *args, **kwargs)

    monkeypatch.setattr(app, "send_task", recording_send)
    counts = []
    for size, name in ((3, "small"), (300, "large")):
        _, user = cohort_of(size, smoke_lab, name)
        _clear_marks()
        step = smoke_lab.steps.get(key="make-file")
        with CaptureQueriesContext(connection) as ctx:
            progress_record_check(user=user, step=step, result=CheckResult(passed=False, message="no"), by="check")
        assert not [q for q in ctx.captured_queries if "cohorts_" in q["sql"]]
        counts.append(len(ctx.captured_queries))
        assert sync_redis().smembers(DIRTY_KEY) == {dirty_member(user.id, smoke_lab.id).encode()}
        _clear_marks()
    assert counts[0] == counts[1]
    assert sent == [("cohorts.tasks.dashboards_update", {"flush": True})] * 2


def test_events_while_a_flush_is_queued_ride_with_it_whoever_they_are_about(smoke_lab, monkeypatch):
    from labs.events import DIRTY_KEY, progress_changed
    from labs.redis import sync_redis
    from labsite.celery import app

    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, *a, **kw: sent.append((name, kw)))
    _clear_marks()
    for user_id in range(1, 21):
        progress_changed(user_id=user_id, lab_id=smoke_lab.id)
        progress_changed(user_id=user_id, lab_id=smoke_lab.id)
    assert len(sent) == 1 and "countdown" not in sent[0][1] and "eta" not in sent[0][1]  # no task held unacked
    assert sync_redis().scard(DIRTY_KEY) == 20  # one mark per trainee and lab, however many events
    from cohorts.tasks import dashboards_update

    dashboards_update(flush=True)  # takes every mark and clears the queued flag: the next change is sent
    assert sync_redis().scard(DIRTY_KEY) == 0
    progress_changed(user_id=1, lab_id=smoke_lab.id)
    assert len(sent) == 2


def test_a_flush_reads_marked_rows_together_with_the_same_queries_for_one_or_three_rows_and_any_cohort_size(
        smoke_lab, monkeypatch):
    from cohorts.models import Membership
    from cohorts.services import cohort_group, dashboards_flush
    from labs.events import progress_changed
    from labsite.celery import app

    monkeypatch.setattr(app, "send_task", lambda *a, **kw: None)  # this test runs the flush itself, not a worker
    # Marks of its own: a worker of this run (other tests start one) flushing the shared
    # set would take this test's marks.
    import os

    import cohorts.services
    import labs.events

    for module in (labs.events, cohorts.services):
        monkeypatch.setattr(module, "DIRTY_KEY", f"lab:dash:dirty:test{os.getpid()}")
        monkeypatch.setattr(module, "FLUSH_KEY", f"lab:dash:flush:test{os.getpid()}")

    counts = []
    for size, name, marked in ((3, "fsmall", 1), (300, "flarge", 1), (300, "fthree", 3)):
        cohort, _ = cohort_of(size, smoke_lab, name)
        users = [m.user_id for m in Membership.objects.filter(cohort=cohort).order_by("user_id")[:marked]]
        receive = listen(cohort_group(cohort.id))
        _clear_marks()
        for user_id in users:
            progress_changed(user_id=user_id, lab_id=smoke_lab.id)
        with CaptureQueriesContext(connection) as ctx:
            assert dashboards_flush() == marked
        counts.append(len(ctx.captured_queries))
        got = [receive() for _ in users]
        assert sorted(e["user"] for e in got) == users and {(e["type"], e["lab"]) for e in got} == {("row", "smoke")}
        for q in (q["sql"] for q in ctx.captured_queries):  # about the marked trainees only, never the cohort
            if any(t in q for t in ("labs_stepprogress", "labs_session", "cohorts_membership")):
                assert re.search(r'"user_id" IN \(' + ", ".join(map(str, users)) + r"\)", q), q
    assert counts[0] == counts[1] == counts[2] <= 10, counts


def test_a_join_sends_the_new_trainees_row_to_the_dashboard(smoke_lab, make_user):
    from cohorts.services import cohort_group, dashboards_notify

    cohort, _ = cohort_of(3, smoke_lab, "joins")
    newcomer = make_user("newcomer")
    from cohorts.models import Membership

    Membership.objects.create(cohort=cohort, user=newcomer)
    receive = listen(cohort_group(cohort.id))
    assert dashboards_notify(user_id=newcomer.id, cohort_id=cohort.id) == 1
    event = receive()
    assert (event["type"], event["user"], event["username"], event["lab"]) == ("row", newcomer.id, "newcomer", "smoke")
    assert {c["state"] for c in event["row"]["steps"]} == {"not_started"}


def test_a_flush_that_could_not_be_queued_is_tried_again_by_the_next_event(smoke_lab, monkeypatch):
    from labs.events import DIRTY_KEY, FLUSH_KEY, progress_changed
    from labs.redis import sync_redis
    from labsite.celery import app

    def broken(*args, **kwargs):
        raise RuntimeError("broker down")

    _clear_marks()
    monkeypatch.setattr(app, "send_task", broken)
    progress_changed(user_id=1, lab_id=smoke_lab.id)  # the trainee's action stands; the mark waits
    assert sync_redis().scard(DIRTY_KEY) == 1 and not sync_redis().exists(FLUSH_KEY)
    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, *a, **kw: sent.append(kw["kwargs"]))
    progress_changed(user_id=2, lab_id=smoke_lab.id)
    assert sent == [{"flush": True}] and sync_redis().scard(DIRTY_KEY) == 2
    _clear_marks()
