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
