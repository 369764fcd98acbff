"""Bad input and faults: a missing image, a worker that is down or killed mid-session."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest
import redis
from django.conf import settings

from tests.conftest import IS_ROOT, ROOT, wait_for
from tests.labs.test_sessions import start_session

pytestmark = [
    pytest.mark.root, pytest.mark.sandbox,
    pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def labs_for_faults(transactional_db):
    from labs.labfile import load_lab
    from labs.services import lab_import

    for name in ("smoke", "missing-image"):
        lab_import(spec=load_lab(ROOT / "tests" / "fixtures" / "labs" / name))


def test_a_lab_whose_image_is_missing_fails_with_a_clear_message(worker, labs_for_faults, make_user, client, caplog):
    client.force_login(make_user())
    resp = client.post("/api/sessions/", {"lab": "missing-image"}, content_type="application/json")
    sid = resp.json()["id"]
    session = wait_for(lambda: (d := client.get(f"/api/sessions/{sid}/").json())["state"] != "starting" and d,
                       what="start to end")
    assert session["state"] == "failed"
    assert "lab/never-built:latest" in session["message"]
    assert "image build" in session["message"] or "import" in session["message"]
    assert "lab/never-built:latest" in worker.log.read_text()  # and in the worker's log


def test_with_every_worker_down_starting_says_unavailable_within_seconds(worker, labs_for_faults, make_user, client, settings):
    settings.LAB_HOST_WAIT = 1  # how long Start waits for a host to come up
    client.force_login(make_user())
    r = redis.Redis.from_url(settings.REDIS_URL)
    worker.stop(signal.SIGKILL)
    try:
        wait_for(lambda: r.get(f"lab:host:{worker.host}") is None, timeout=8, what="heartbeat to expire")
        resp = client.post("/api/sessions/", {"lab": "smoke"}, content_type="application/json",
                           HTTP_ACCEPT_LANGUAGE="en")
        assert resp.status_code == 503
        assert "unavailable" in resp.json()["error"] and "沙箱" not in resp.json()["error"]  # one language
    finally:
        worker.restart()


def test_a_worker_killed_mid_session_is_reconciled_on_restart_and_the_session_marked_lost(worker, labs_for_faults, make_user, client):
    from labs.hostconfig import host_config
    from sandbox.runtime import runc_list

    client.force_login(make_user())
    session = start_session(client)
    cfg = host_config()
    worker.stop(signal.SIGKILL)  # the whole host dies: worker, holder and relay
    worker.restart()
    lost = wait_for(lambda: (d := client.get(f"/api/sessions/{session['id']}/").json())["state"] == "lost" and d,
                    what="session marked lost")
    # In the site's language (the page words the reason itself): found by the API's host
    # check, or by the restarted worker's reconcile, whichever came first.
    assert lost["message"] in ("沙箱已丢失：工作节点已离线。", "沙箱已丢失（工作节点重启）。"), lost["message"]
    # "lost" may come from the API's host check before the restarted relay has swept
    # (the killed worker's heartbeat outlives it by up to HOST_TTL): wait for the sweep.
    wait_for(lambda: session["id"] not in {c["id"] for c in runc_list(cfg)}
             and session["id"] not in Path("/proc/self/mountinfo").read_text()
             and not (cfg.sessions_dir / session["id"]).exists(), timeout=60, what="the restarted relay's sweep")
    fresh = start_session(client)  # a new sandbox is offered at once
    assert fresh["id"] != session["id"]


def test_an_open_terminal_learns_within_seconds_that_its_host_died(worker, web, labs_for_faults, make_user, client):
    import json
    import time

    from tests.labs.test_sessions import ws_connect

    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        worker.stop(signal.SIGKILL)
        try:
            t0 = time.monotonic()
            states = []
            while time.monotonic() - t0 < 15 and "lost" not in states:
                try:
                    msg = ws.recv(timeout=1)
                except TimeoutError:
                    continue
                if isinstance(msg, str) and json.loads(msg).get("type") == "state":
                    states.append(json.loads(msg)["state"])
            assert "lost" in states
        finally:
            worker.restart()


def _last_pos(term) -> str:
    return [m["id"] for m in term.control if m.get("type") == "pos"][-1]


def _resume(web, client, session, since: str, timeout: float = 20):
    """Reconnect as the page does (backoff until the server answers), resuming after `since`."""
    import time

    from tests.labs.test_sessions import ws_connect

    deadline = time.monotonic() + timeout
    while True:
        try:
            return ws_connect(web, client, f"{session['ws']}?since={since}")
        except (OSError, Exception):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_restarted_web_server_resumes_the_terminal_exactly_where_it_left_off(worker, web, labs_for_faults, make_user, client):
    from labs.hostconfig import host_config
    from sandbox.service import sandbox_exec
    from tests.conftest import restart_web
    from tests.labs.test_sessions import Terminal, ws_connect

    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        term.send("echo before-$((1+1))\r")
        term.expect("before-2\r\n")
        # the prompt after the output, and the pos message that covers it
        wait_for(lambda: term.poll() or (term.out.rstrip(b"\x1b[6n").endswith(b"# ") and term.control[-1]["type"] == "pos"),
                 what="the prompt after before-2")
        since = _last_pos(term)
    restart_web(web)
    # output while no browser is connected, written to the trainee's terminal
    sandbox_exec(host_config(), session["id"], "echo during-outage > /proc/1/fd/1 2>/dev/null || "
                 "for t in /dev/pts/[0-9]*; do echo during-outage > $t; done", timeout=5)
    with _resume(web, client, session, since) as ws:
        term = Terminal(ws)
        term.expect("during-outage")
        term.send("echo after-$((2+2))\r")
        term.expect("after-4")
        assert b"before-2" not in term.out  # no duplicate of what the page already had
        assert term.out.count(b"during-outage") == 1


def test_a_restarted_redis_is_survived_and_terminals_reconnect_by_themselves(worker, web, labs_for_faults, make_user, client):
    import redis as redis_lib

    from tests.env import restart_redis
    from tests.labs.test_sessions import Terminal, ws_connect

    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        term.send("echo pre-$((3+3))\r")
        term.expect("pre-6")
        since = _last_pos(term)
    restart_redis()  # all of Redis is gone: streams, queues, heartbeats
    r = redis_lib.Redis.from_url(settings.REDIS_URL)
    wait_for(lambda: r.get(f"lab:host:{worker.host}"), timeout=15, what="the relay's heartbeat after the restart")
    with _resume(web, client, session, since) as ws:
        term = Terminal(ws)
        term.send("echo post-$((4+4))\r")
        term.expect("post-8", timeout=15)
    # the worker still takes tasks: a check goes through the new broker
    result = client.post(f"/api/sessions/{session['id']}/check?wait=1", {"step": "make-file"}, content_type="application/json")
    assert result.json() == {"passed": False, "message": "no /root/done yet"}
