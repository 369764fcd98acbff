"""Checks as a hostile trainee would use them (issue 13, item 4): one in flight per
session, on their own queue, and a hung one does not hold anybody else's."""
from __future__ import annotations

import threading

import pytest
from django.conf import settings

from tests.conftest import IS_ROOT, wait_for
from tests.labs.test_sessions import smoke_lab, start_session  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.root, pytest.mark.sandbox,
    pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
    pytest.mark.django_db(transaction=True),
]


def test_one_check_per_session_is_in_flight_and_other_sessions_still_check(worker, smoke_lab, make_user, client):
    from django.test import Client

    from labs.redis import sync_redis
    from labs.services import check_lock_key

    client.force_login(make_user("hostile"))
    hostile = start_session(client)
    neighbour_client = Client()
    neighbour_client.force_login(make_user("neighbour"))
    neighbour = start_session(neighbour_client)
    url = f"/api/sessions/{hostile['id']}/check?wait=1"
    results: list[dict] = []
    # The hostile trainee's check hangs (its step's timeout is 2 s) ...
    hung = threading.Thread(target=lambda: results.append(
        Client(enforce_csrf_checks=False).post(url, {"step": "hangs"}, content_type="application/json",
                                               HTTP_COOKIE=f"sessionid={client.cookies['sessionid'].value}").json()))
    hung.start()
    try:
        wait_for(lambda: sync_redis().exists(check_lock_key(hostile["id"])), timeout=10, what="the check in flight")
        # ... a second one of the same session is refused at once, not queued ...
        again = client.post(url, {"step": "make-file"}, content_type="application/json")
        assert again.status_code == 409, again.content
        # ... and the neighbour's check runs and answers meanwhile.
        other = neighbour_client.post(f"/api/sessions/{neighbour['id']}/check?wait=1", {"step": "make-file"},
                                      content_type="application/json").json()
        assert other == {"passed": False, "message": "no /root/done yet"}
    finally:
        hung.join(30)
    assert results and results[0]["passed"] is False and "2 s" in results[0]["message"]
    # The lock is gone with the check: the next one runs.
    assert client.post(url, {"step": "make-file"}, content_type="application/json").json()["passed"] is False


def test_checks_are_sent_to_their_own_queue_and_the_worker_consumes_it(worker, smoke_lab, make_user, client):
    from celery.signals import before_task_publish

    from labsite.celery import app

    sent: list[tuple[str, str]] = []

    def record(sender=None, routing_key=None, **kw):
        sent.append((sender, routing_key))

    before_task_publish.connect(record)
    try:
        client.force_login(make_user())
        session = start_session(client)
        client.post(f"/api/sessions/{session['id']}/check", {"step": "make-file"}, content_type="application/json")
    finally:
        before_task_publish.disconnect(record)
    host = settings.LAB_HOST_NAME
    assert ("labs.tasks.sandbox_start", f"host.{host}") in sent
    assert ("labs.tasks.sandbox_check", f"host.{host}.checks") in sent
    queues = {q["name"] for qs in (app.control.inspect(timeout=5).active_queues() or {}).values() for q in qs}
    assert {f"host.{host}", f"host.{host}.checks"} <= queues


def test_a_pressed_check_answers_202_at_once_and_its_result_comes_over_the_terminal_websocket(
        worker, web, smoke_lab, make_user, client):
    """No web worker waits on a check (issue 14): the host records it and tells every page."""
    from labs.models import CheckRecord, StepProgress
    from labs.hostconfig import host_config
    from sandbox.service import sandbox_exec
    from tests.labs.test_sessions import Terminal, ws_connect

    user = make_user()
    client.force_login(user)
    session = start_session(client)
    url = f"/api/sessions/{session['id']}/check"

    def result_of(term: Terminal) -> dict:
        """The next check result among the socket's control messages (terminal bytes aside)."""
        def found():
            term.poll()
            checks = [m for m in term.control if m.get("type") == "check"]
            return checks and term.control.pop(term.control.index(checks[0]))
        return wait_for(found, timeout=60, what="the check's result over the WebSocket")

    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        wait_for(lambda: term.poll() or any(m.get("type") == "hello" for m in term.control), what="hello")
        first = client.post(url, {"step": "make-file"}, content_type="application/json")
        assert first.status_code == 202 and first.json() == {"queued": True}
        assert result_of(term) == {"type": "check", "step": "make-file", "passed": False,
                                 "message": "no /root/done yet", "by": "check"}
        assert sandbox_exec(host_config(), session["id"], "touch /root/done", timeout=5).exit_code == 0
        assert client.post(url, {"step": "make-file"}, content_type="application/json").status_code == 202
        passed = result_of(term)
        assert passed["passed"] is True and passed["by"] == "check"
    # The host recorded both attempts; the first pass marked the step passed by the check.
    progress = StepProgress.objects.get(user=user, step__key="make-file")
    assert progress.attempts == 2 and progress.passed_by == "check" and progress.passed_at is not None
    assert list(CheckRecord.objects.filter(user=user).order_by("id").values_list("passed", flat=True)) == [False, True]
