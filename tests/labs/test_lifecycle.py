"""A session's lifecycle: reset, lifetime and idle limits with a warning first, extend."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from tests.conftest import IS_ROOT, wait_for
from tests.labs.test_sessions import Terminal, smoke_lab, start_session, ws_connect  # noqa: F401

pytestmark = [
    pytest.mark.root, pytest.mark.sandbox,
    pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
    pytest.mark.django_db(transaction=True),
]


def state_of(client, sid: str) -> str:
    return client.get(f"/api/sessions/{sid}/").json()["state"]


def test_reset_gives_a_fresh_upper_layer_and_keeps_progress(worker, smoke_lab, make_user, client):
    from labs.models import StepProgress
    from labs.hostconfig import host_config
    from sandbox.service import sandbox_exec

    client.force_login(make_user())
    session = start_session(client)
    sid = session["id"]
    sandbox_exec(host_config(), sid, "touch /root/done", timeout=5)
    assert client.post(f"/api/sessions/{sid}/check?wait=1", {"step": "make-file"}, content_type="application/json").json()["passed"]
    assert client.post(f"/api/sessions/{sid}/reset").status_code == 202
    wait_for(lambda: state_of(client, sid) == "ready", what="ready after reset")
    after = client.post(f"/api/sessions/{sid}/check?wait=1", {"step": "make-file"}, content_type="application/json").json()
    assert after == {"passed": False, "message": "no /root/done yet"}  # the upper layer is new
    progress = StepProgress.objects.get(step__key="make-file")
    assert progress.passed_at is not None and progress.attempts == 2  # progress kept


def test_a_session_past_its_lifetime_is_stopped_by_the_reaper(worker, smoke_lab, make_user, client):
    from labs.models import Session
    from labs.services import sessions_reap

    client.force_login(make_user())
    sid = start_session(client)["id"]
    Session.objects.filter(id=sid).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert sessions_reap()["expired"] == 1
    wait_for(lambda: state_of(client, sid) == "stopped", what="stopped")
    # Stored in the site's language (the page words it itself, from the state's reason).
    assert client.get(f"/api/sessions/{sid}/").json()["message"] == "已到时间。"


def test_an_idle_session_is_warned_first_then_stopped(worker, web, smoke_lab, make_user, client):
    from labs.services import sessions_reap

    client.force_login(make_user())
    session = start_session(client)
    sid = session["id"]
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        # The consumer joins the session's group before it says hello; an event sent before
        # that is not for this page (it learns the state from hello). Slower to come on
        # PostgreSQL, where each query of the consumer opens a connection.
        wait_for(lambda: term.poll() or any(m["type"] == "hello" for m in term.control), timeout=10, what="hello")
        term.send("true\r")  # some activity, so the relay has a last keystroke time
        wait_for(lambda: sessions_reap(now=timezone.now() + timedelta(minutes=27))["warned"] == 1, timeout=5,
                 what="a warning 3 minutes before the idle limit (30 min)")
        warning = None
        while warning is None:
            msg = ws.recv(timeout=5)
            if isinstance(msg, str) and json.loads(msg)["type"] == "warning":
                warning = json.loads(msg)
        assert warning["reason"] == "idle"
    assert sessions_reap(now=timezone.now() + timedelta(minutes=31))["idle"] == 1
    wait_for(lambda: state_of(client, sid) == "stopped", what="stopped after idling")


def test_extend_pushes_the_end_back_within_the_labs_limit(worker, smoke_lab, make_user, client):
    from labs.models import Session

    client.force_login(make_user())
    sid = start_session(client)["id"]
    s = Session.objects.get(id=sid)
    Session.objects.filter(id=sid).update(expires_at=timezone.now() + timedelta(minutes=2))
    resp = client.post(f"/api/sessions/{sid}/extend")
    assert resp.status_code == 200
    new_end = Session.objects.get(id=sid).expires_at
    # One more 120-minute block after the current end (2 minutes from now), not from now.
    assert timedelta(minutes=121) < new_end - timezone.now() <= timedelta(minutes=122)
    view = resp.json()
    assert view["expires_at"] == new_end.isoformat()
    # The smoke lab's idle limit (30 minutes, restarted by Extend) now ends it first.
    assert view["ends_because"] == "idle" and view["idle_minutes"] == 30
    assert timedelta(minutes=29) < datetime.fromisoformat(view["ends_at"]) - timezone.now() <= timedelta(minutes=30, seconds=1)
    Session.objects.filter(id=sid).update(expires_at=s.created_at + timedelta(minutes=240))
    refused = client.post(f"/api/sessions/{sid}/extend", HTTP_ACCEPT_LANGUAGE="en")
    assert refused.status_code == 409 and "limit" in refused.json()["error"] and "延长" not in refused.json()["error"]


def test_each_steps_setup_runs_in_the_sandbox_as_the_step_begins_and_again_after_a_reset(worker, make_user, client):
    from labs.labfile import load_lab
    from labs.services import lab_import
    from labs.hostconfig import host_config
    from sandbox.service import sandbox_exec
    from tests.conftest import ROOT

    lab_import(spec=load_lab(ROOT / "tests" / "fixtures" / "labs" / "setup-steps"))
    client.force_login(make_user())
    sid = start_session(client, "setup-steps")["id"]
    cfg = host_config()

    def seed(name: str) -> str:
        return sandbox_exec(cfg, sid, f"cat /root/{name}.seed 2>/dev/null", timeout=5).output.strip()

    wait_for(lambda: seed("first") == "one", what="the first step's setup")  # run when the sandbox became ready
    assert seed("second") == ""  # not before its step begins
    sandbox_exec(cfg, sid, "echo done > /root/first.seed", timeout=5)
    assert client.post(f"/api/sessions/{sid}/check?wait=1", {"step": "first"}, content_type="application/json").json()["passed"]
    client.post("/api/labs/setup-steps/progress")  # the page says: I am at my current step
    wait_for(lambda: seed("second") == "two", what="the second step's setup")
    assert client.post(f"/api/sessions/{sid}/reset").status_code == 202
    wait_for(lambda: state_of(client, sid) == "ready", what="ready after reset")
    wait_for(lambda: seed("second") == "two", what="the current step's setup in the fresh sandbox")
