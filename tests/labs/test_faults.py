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


def test_with_every_worker_down_starting_says_unavailable_within_seconds(worker, labs_for_faults, make_user, client):
    client.force_login(make_user())
    r = redis.Redis.from_url(settings.REDIS_URL)
    worker.stop(signal.SIGKILL)
    try:
        wait_for(lambda: r.get(f"lab:host:{worker.host}") is None, timeout=8, what="heartbeat to expire")
        resp = client.post("/api/sessions/", {"lab": "smoke"}, content_type="application/json")
        assert resp.status_code == 503
        assert "unavailable" in resp.json()["error"]
    finally:
        worker.restart()


def test_a_worker_killed_mid_session_is_reconciled_on_restart_and_the_session_marked_lost(worker, labs_for_faults, make_user, client):
    from sandbox.config import host_config
    from sandbox.runtime import runc_list

    client.force_login(make_user())
    session = start_session(client)
    cfg = host_config()
    worker.stop(signal.SIGKILL)  # the relay dies with it (PR_SET_PDEATHSIG)
    worker.restart()
    lost = wait_for(lambda: (d := client.get(f"/api/sessions/{session['id']}/").json())["state"] == "lost" and d,
                    what="session marked lost")
    assert "lost" in lost["message"]
    assert session["id"] not in {c["id"] for c in runc_list(cfg)}
    assert session["id"] not in Path("/proc/self/mountinfo").read_text()
    assert not (cfg.sessions_dir / session["id"]).exists()
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
