"""Several sandbox hosts on one machine, as two machines would be: two Celery workers
with their own host names, queues, relays, runc roots and session directories."""
from __future__ import annotations

import signal

import pytest
from django.test import Client

from tests.conftest import IS_ROOT, start_worker
from tests.labs.test_sessions import Terminal, smoke_lab, start_session, ws_connect  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.root, pytest.mark.sandbox,
    pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
    pytest.mark.django_db(transaction=True),
]


def test_sessions_spread_over_two_hosts_and_each_is_served_by_its_own(worker, web, builtin_labs, make_user):
    from labs.labfile import load_lab
    from labs.services import lab_import
    from labs.hostconfig import host_config
    from sandbox.runtime import runc_list
    from tests.conftest import ROOT
    from dataclasses import replace

    lab_import(spec=load_lab(ROOT / "tests" / "fixtures" / "labs" / "smoke"))
    second = start_worker(f"{worker.host}b")
    try:
        clients, sessions = [], []
        for i in range(4):
            c = Client()
            c.force_login(make_user(f"t{i}"))
            clients.append(c)
            sessions.append(start_session(c))
        hosts = {s["host"] for s in sessions}
        assert hosts == {worker.host, second.host}
        # checks and stops reach the host that owns the sandbox
        for c, s in zip(clients, sessions):
            r = c.post(f"/api/sessions/{s['id']}/check?wait=1", {"step": "make-file"}, content_type="application/json")
            assert r.json() == {"passed": False, "message": "no /root/done yet"}
            cfg = replace(host_config(), host=s["host"])
            assert s["id"] in {x["id"] for x in runc_list(cfg)}
        # stopping one host does not disturb the other's sandboxes
        second.stop(signal.SIGTERM)
        for c, s in zip(clients, sessions):
            state = c.get(f"/api/sessions/{s['id']}/").json()["state"]
            if s["host"] == second.host:
                assert state == "lost"
            else:
                assert state == "ready"
                with ws_connect(web, c, s["ws"]) as ws:
                    term = Terminal(ws)
                    term.send("echo alive-$((2*3))\r")
                    term.expect("alive-6")
                assert c.delete(f"/api/sessions/{s['id']}/").status_code == 204
    finally:
        second.stop()


def test_a_full_host_answers_the_lab_is_full_at_once_never_a_hang(worker, builtin_labs, make_user):
    from tests.conftest import _subprocess_env

    worker.stop()
    small = start_worker(f"{worker.host}s", env=dict(_subprocess_env(), LAB_HOST_CAPACITY="1"))
    try:
        first, second = Client(), Client()
        first.force_login(make_user("first"))
        second.force_login(make_user("second"))
        start_session(first, "first-container")
        resp = second.post("/api/sessions/", {"lab": "first-container"}, content_type="application/json",
                           HTTP_ACCEPT_LANGUAGE="en")
        assert resp.status_code == 503
        assert "The lab is full, try again in" in resp.json()["error"] and "minutes" in resp.json()["error"]
        assert "实验室" not in resp.json()["error"]  # the trainee's language only
    finally:
        small.stop()
        worker.restart()


def test_a_trainee_may_hold_only_a_few_sandboxes_at_once(worker, builtin_labs, make_user, settings):
    from labs.labfile import load_lab
    from labs.services import lab_import
    from tests.conftest import ROOT

    settings.LAB_USER_SESSION_LIMIT = 1
    lab_import(spec=load_lab(ROOT / "tests" / "fixtures" / "labs" / "smoke"))
    c = Client()
    c.force_login(make_user())
    start_session(c, "first-container")
    resp = c.post("/api/sessions/", {"lab": "smoke"}, content_type="application/json", HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert resp.status_code == 409
    assert resp.json()["error"] == "最多同时运行 1 个沙箱：请先停止一个。"


def test_a_drained_host_takes_no_starts_keeps_its_sessions_and_a_host_that_comes_back_rejoins(
        worker, web, smoke_lab, make_user, capsys):
    from django.core.management import call_command

    from labs.models import Session

    users = iter(range(100))

    def start() -> tuple[Client, dict]:
        c = Client()
        c.force_login(make_user(f"d{next(users)}"))
        return c, start_session(c)

    second = start_worker(f"{worker.host}b")
    relay_before = worker.relay_pid
    try:
        call_command("hosts", "drain", second.host)
        kept_client, kept = start()
        assert kept["host"] == worker.host
        call_command("hosts", "undrain", second.host)
        call_command("hosts", "drain", worker.host)
        capsys.readouterr()
        call_command("hosts", "list")
        listed = capsys.readouterr().out
        assert f"{worker.host}: capacity" in listed and "drained" in listed.split(f"{worker.host}:")[1].split("\n")[0]
        # Drained: every start goes to the other host, and the drained host's session runs on.
        placed = [start()[1]["host"] for _ in range(3)]
        assert placed == [second.host] * 3
        with ws_connect(web, kept_client, kept["ws"]) as ws:
            term = Terminal(ws)
            term.send("echo still-$((6*7))\r")
            term.expect("still-42")
        # Undrained: starts go by free places, so to it until the two are level again.
        call_command("hosts", "undrain", worker.host)
        assert [start()[1]["host"] for _ in range(2)] == [worker.host] * 2
        # A host that goes away and comes back rejoins: nothing else restarts.
        second.stop(signal.SIGTERM)
        assert start()[1]["host"] == worker.host
        second.restart()
        assert start()[1]["host"] == second.host  # it has the more free places now
        assert worker.relay_pid == relay_before and web  # the first host and the web ran on
        assert Session.objects.get(id=kept["id"]).state == "ready"
    finally:
        call_command("hosts", "undrain", worker.host)
        call_command("hosts", "undrain", second.host)
        second.stop()
