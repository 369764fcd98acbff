"""One process dying does not take a sandbox with it: the Celery worker and the relay
may each be killed or restarted, and the trainee's shell (the same process, its
variables still set) carries on, losing no output and repeating no keystroke."""
from __future__ import annotations

import os
import re
import signal
import threading
from datetime import timedelta

import pytest

from tests.conftest import IS_ROOT, ROOT, wait_for
from tests.labs.test_sessions import Terminal, start_session, ws_connect

pytestmark = [
    pytest.mark.root, pytest.mark.sandbox,
    pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def smoke(transactional_db):
    from labs.labfile import load_lab
    from labs.services import lab_import

    return lab_import(spec=load_lab(ROOT / "tests" / "fixtures" / "labs" / "smoke"))[0]


def _shell_pid(term: Terminal) -> str:
    """Mark the shell (a variable) and return its pid as the sandbox sees it."""
    term.send("KEPT=still-here; echo pid:$$:\r")
    found = wait_for(lambda: term.poll() or re.search(rb"pid:(\d+):", term.out), what="the shell's pid")
    return found.group(1).decode()


def _state(client, sid: str) -> str:
    return client.get(f"/api/sessions/{sid}/").json()["state"]


def test_a_killed_worker_takes_no_sandbox_and_no_terminal_with_it(worker, web, smoke, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        pid = _shell_pid(term)
        worker.kill_worker()
        try:
            # The terminal does not even notice: the relay and the holder carry it.
            term.send("echo $KEPT-$$-$((6*7))\r")
            term.expect(f"still-here-{pid}-42")
        finally:
            worker.start_worker_again()
        # The new worker takes tasks for the same sandbox: a check runs inside it.
        term.send("touch /root/done\r")
        resp = client.post(f"/api/sessions/{session['id']}/check?wait=1", {"step": "make-file"}, content_type="application/json")
        assert resp.json()["passed"] is True, resp.content
    assert _state(client, session["id"]) == "ready"


def test_a_killed_relay_is_started_again_and_carries_on_the_same_shell(worker, web, smoke, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        pid = _shell_pid(term)
        # Commands already run must not run again when a new relay takes over.
        term.send("N=0\r")
        for i in range(1, 4):
            term.send("N=$((N+1)); echo n=$N.\r")
            term.expect(f"n={i}.")
        old_relay = worker.relay_pid
        # Output written while no relay runs waits in the PTY; keys typed meanwhile wait in Redis.
        term.send("sleep 1; echo written-$((20+3))-while-down\r")
        os.kill(old_relay, signal.SIGKILL)
        term.send("echo typed-$((30+4))-while-down\r")
        wait_for(lambda: worker.relay_pid not in (None, old_relay), timeout=30, what="the holder to start a new relay")
        term.expect("written-23-while-down", timeout=20)
        term.expect("typed-34-while-down", timeout=20)
        term.send("echo $KEPT-$$-N=$N.\r")
        term.expect(f"still-here-{pid}-N=3.")  # nothing typed before the kill ran twice
        term.send("sleep 2; echo settled-$((5*5))\r")  # long enough for a replayed `sleep 1; …` to show
        term.expect("settled-25", timeout=20)
        assert term.out.count(b"written-23-while-down") == 1  # nothing lost, nothing twice
        assert term.out.count(b"typed-34-while-down") == 1
    assert _state(client, session["id"]) == "ready"  # never lost
    resp = client.post(f"/api/sessions/{session['id']}/check?wait=1", {"step": "make-file"}, content_type="application/json")
    assert resp.json() == {"passed": False, "message": "no /root/done yet"}


def test_a_relay_replaced_for_an_upgrade_keeps_every_shell_and_a_new_start_works(worker, web, smoke, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        pid = _shell_pid(term)
        old_relay = worker.relay_pid
        worker.holder.send_signal(signal.SIGHUP)  # replace the relay: SIGTERM to it, a new one at once
        wait_for(lambda: worker.relay_pid not in (None, old_relay), timeout=30, what="the replacement relay")
        term.send("echo $KEPT-$$\r")
        term.expect(f"still-here-{pid}", timeout=20)
    other = make_user("second")
    client.force_login(other)
    fresh = start_session(client)  # the new relay starts sandboxes too
    assert fresh["id"] != session["id"]


def test_a_shell_that_exits_after_a_relay_restart_ends_its_session(worker, web, smoke, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    old_relay = worker.relay_pid
    os.kill(old_relay, signal.SIGKILL)
    wait_for(lambda: worker.relay_pid not in (None, old_relay), timeout=30, what="a new relay")
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        term.send("exit\r")
        wait_for(lambda: _state(client, session["id"]) == "stopped", timeout=20, what="the session to end")
    from labs.hostconfig import host_config

    cfg = host_config()
    wait_for(lambda: not (cfg.sessions_dir / session["id"]).exists(), what="the sandbox to be removed")


def test_start_waits_for_a_host_that_is_still_coming_up(worker, smoke, make_user, client, settings):
    import redis

    settings.LAB_HOST_WAIT = 60
    client.force_login(make_user())
    worker.stop(signal.SIGKILL)
    r = redis.Redis.from_url(settings.REDIS_URL)
    wait_for(lambda: r.get(f"lab:host:{worker.host}") is None, timeout=10, what="the heartbeat to expire")
    answer: dict = {}

    def press_start() -> None:
        from django.db import connection

        try:
            answer["resp"] = client.post("/api/sessions/", {"lab": "smoke"}, content_type="application/json")
        finally:
            connection.close()

    # The request in a thread, the host in this one: PR_SET_PDEATHSIG ties a child to
    # the thread that started it.
    trainee = threading.Thread(target=press_start)
    trainee.start()
    worker.restart()  # takes seconds: the request is waiting by the time the host beats
    trainee.join(60)
    assert answer["resp"].status_code == 201, answer["resp"].content  # waited for the host, no 503


def test_a_start_no_worker_takes_fails_in_bounded_time_with_a_message(worker, smoke, make_user, client, settings):
    from labs.models import Session
    from labs.services import sessions_reap

    client.force_login(make_user())
    worker.kill_worker()  # the host beats (its relay runs) but nothing takes tasks
    try:
        resp = client.post("/api/sessions/", {"lab": "smoke"}, content_type="application/json")
        sid = resp.json()["id"]
        assert _state(client, sid) == "starting"
        # Not overdue yet: nothing happens.
        assert sessions_reap()["stale"] == 0 and _state(client, sid) == "starting"
        Session.objects.filter(id=sid).update(state_changed_at=Session.objects.get(id=sid).state_changed_at
                                              - timedelta(seconds=settings.LAB_START_TIMEOUT + 1))
        assert sessions_reap()["stale"] == 1
        data = client.get(f"/api/sessions/{sid}/").json()
        assert data["state"] == "failed"
        assert "请再点一次“开始”" in data["message"]  # the site's language (zh-hans) by default
    finally:
        worker.start_worker_again()
    fresh = start_session(client)  # Start again works at once
    assert fresh["id"] != sid


def test_a_page_waits_for_a_restarting_relay_while_the_holder_still_beats(smoke, make_user):
    """A host whose relay heartbeat is gone but whose holder beats has live sandboxes:
    no page may call them lost. Only when the holder is gone too is the session lost."""
    from labs.models import Session
    from labs.redis import sync_redis
    from labs.services import session_verify_host

    session = Session.objects.create(user=make_user(), lab=smoke, host="restarting", state=Session.State.READY)
    r = sync_redis()
    r.set("lab:hold:restarting", 1, ex=5)
    assert session_verify_host(sid=session.id) is None
    assert Session.objects.get(id=session.id).state == "ready"
    r.delete("lab:hold:restarting")
    assert session_verify_host(sid=session.id) == "lost"
