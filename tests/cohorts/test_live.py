"""The live parts on the real stack (Celery worker + relay, uvicorn, runc): dashboard
updates over /ws/cohorts/<id>/, watching a trainee's terminal, extend / stop / replay,
and the admins' sandbox overview with cgroup numbers."""
from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from tests.cohorts.conftest import make_instructor, signed_in
from tests.conftest import IS_ROOT, wait_for
from tests.labs.test_sessions import Terminal, start_session, ws_connect
from tests.support import ws_messages

pytestmark = [
    pytest.mark.root, pytest.mark.sandbox,
    pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
    pytest.mark.django_db(transaction=True),
]


def events(ws, until, timeout: float = 20) -> list[dict]:
    """Read JSON messages until `until(messages)` holds."""
    return ws_messages(ws, until, timeout=timeout)


def close_code(web, client, path: str) -> int:
    with ws_connect(web, client, path) as ws:
        with pytest.raises(Exception):
            while True:
                ws.recv(timeout=5)
    return ws.close_code


def test_the_dashboard_socket_gets_the_trainees_row_when_their_sandbox_starts_and_they_check(worker, web, klass):
    with ws_connect(web, klass.teacher_client, f"/ws/cohorts/{klass.cohort.id}/") as ws:
        assert events(ws, lambda s: s)[0] == {"type": "hello", "cohort": klass.cohort.id}
        session = start_session(klass.trainee_client)
        rows = events(ws, lambda s: any(e["row"]["session"] and e["row"]["session"]["state"] == "ready" for e in s))
        assert all(e["type"] == "row" and e["user"] == klass.trainee.id and e["lab"] == "smoke" for e in rows)
        assert rows[-1]["row"]["session"]["id"] == session["id"]
        check = klass.trainee_client.post(f"/api/sessions/{session['id']}/check?wait=1", {"step": "make-file"},
                                          content_type="application/json")
        assert check.json()["passed"] is False
        (update,) = [e for e in events(ws, lambda s: any(e["row"]["steps"][0]["attempts"] for e in s))
                     if e["row"]["steps"][0]["attempts"]]
        cell = update["row"]["steps"][0]
        assert (cell["step"], cell["state"], cell["attempts"]) == ("make-file", "working", 1)
        assert update["username"] == "ada" and "stats" not in update  # the page recomputes the numbers
        assert len(json.dumps(update)) < 4000  # a small update, not the whole dashboard


def test_a_trainee_who_joins_appears_on_the_open_dashboard_without_a_reload(worker, web, klass, make_user):
    from cohorts.services import cohort_join

    newcomer = make_user("grace")
    with ws_connect(web, klass.teacher_client, f"/ws/cohorts/{klass.cohort.id}/") as ws:
        assert events(ws, lambda s: s)[0]["type"] == "hello"
        cohort_join(user=newcomer, code=klass.cohort.invite_code)
        (row,) = [e for e in events(ws, lambda s: any(e.get("user") == newcomer.id for e in s)) if e.get("user") == newcomer.id]
        assert (row["type"], row["username"], row["lab"]) == ("row", "grace", "smoke")
        assert [c["state"] for c in row["row"]["steps"]] == ["not_started", "not_started"]


def test_the_dashboard_socket_is_only_for_the_cohorts_instructors_and_admins(web, klass, make_user):
    path = f"/ws/cohorts/{klass.cohort.id}/"
    assert close_code(web, signed_in(make_instructor("other-teacher")), path) == 4403
    assert close_code(web, klass.trainee_client, path) == 4403
    assert close_code(web, klass.teacher_client, "/ws/cohorts/999999/") == 4404
    admin = signed_in(get_user_model().objects.create_user("ops", password="x", is_staff=True))
    with ws_connect(web, admin, path) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
    from django.test import Client

    anonymous = Client()
    anonymous.get("/accounts/login/")
    anonymous.cookies["sessionid"] = "none"
    assert close_code(web, anonymous, path) == 4401


def test_an_instructor_watches_their_trainees_terminal_read_only(worker, web, klass):
    from labs.hostconfig import host_config
    from sandbox.service import sandbox_exec

    session = start_session(klass.trainee_client)
    page = klass.teacher_client.get(f"/cohorts/{klass.cohort.id}/watch/{session['id']}/")
    assert page.status_code == 200 and "watch-terminal" in page.content.decode()
    with ws_connect(web, klass.trainee_client, session["ws"]) as own, ws_connect(web, klass.teacher_client, session["ws"]) as watch:
        trainee_term, watch_term = Terminal(own), Terminal(watch)
        watch.send(b"touch /root/pwned\r")
        trainee_term.send("echo seen-by-teacher-$((2*21))\r")
        watch_term.expect("seen-by-teacher-42")
        assert watch_term.control[0]["readonly"] is True

        def watched(term) -> list | None:
            term.poll()
            found = [c["watchers"] for c in term.control if c.get("type") == "watched"]
            return found and found[-1]

        # The trainee sees that they are watched, and by whom.
        assert wait_for(lambda: watched(trainee_term), what="the trainee is told") == ["teacher"]
    with ws_connect(web, klass.trainee_client, session["ws"]) as own:  # the watcher left
        again = Terminal(own)
        assert wait_for(lambda: (again.poll(), [c for c in again.control if c.get("type") == "watched"])[1],
                        what="told on connect")[0]["watchers"] == []
    assert sandbox_exec(host_config(), session["id"], "test -e /root/pwned; echo $?", timeout=5).output.split()[0] == "1"


def test_an_instructor_cannot_watch_trainees_outside_their_cohorts(worker, web, klass, make_user, smoke_lab):
    outsider = signed_in(make_user("outsider"))
    session = start_session(outsider)
    assert close_code(web, klass.teacher_client, session["ws"]) == 4403
    assert klass.teacher_client.get(f"/cohorts/{klass.cohort.id}/watch/{session['id']}/").status_code == 404
    # Their own trainee, but in a lab the cohort was not given: not watchable either.
    from cohorts.services import cohort_unassign_lab

    mine = start_session(klass.trainee_client)
    cohort_unassign_lab(cohort=klass.cohort, lab_slug="smoke")
    assert close_code(web, klass.teacher_client, mine["ws"]) == 4403


def test_an_instructor_extends_and_stops_a_trainees_sandbox_then_replays_it(worker, web, klass):
    from labs.models import Session

    session = start_session(klass.trainee_client)
    cid, sid = klass.cohort.id, session["id"]
    other = signed_in(make_instructor("other-teacher"))
    assert other.post(f"/api/cohorts/{cid}/sessions/{sid}/extend").status_code == 403
    before = Session.objects.get(id=sid).expires_at
    with ws_connect(web, klass.trainee_client, session["ws"]) as ws:  # the trainee's page
        term = Terminal(ws)
        # The consumer joins the session's group before it says hello: an event sent
        # earlier would not reach this socket (the page learns the state from hello).
        wait_for(lambda: term.poll() or any(c.get("type") == "hello" for c in term.control), what="hello")
        extended = klass.teacher_client.post(f"/api/cohorts/{cid}/sessions/{sid}/extend")
        assert extended.status_code == 200, extended.content
        assert Session.objects.get(id=sid).expires_at > before

        def told(kind: str) -> dict | None:
            term.poll()
            return next((c for c in term.control if c.get("type") == kind or c.get("state") == kind), None)

        expiry = wait_for(lambda: told("expiry"), what="the trainee is told of the extension")
        assert "teacher" in expiry["message"] and "延长" in expiry["message"]
        assert klass.teacher_client.post(f"/api/cohorts/{cid}/sessions/{sid}/stop").status_code == 202
        stopping = wait_for(lambda: told("stopping"), what="the trainee is told of the stop")
        assert "teacher" in stopping["message"] and "progress is kept" in stopping["message"]
    wait_for(lambda: klass.trainee_client.get(f"/api/sessions/{sid}/").json()["state"] == "stopped", what="stopped")
    assert "Your instructor teacher stopped" in klass.trainee_client.get(f"/api/sessions/{sid}/").json()["message"]
    wait_for(lambda: klass.teacher_client.get(f"/api/sessions/{sid}/recording").status_code == 200, what="recording")
    assert klass.teacher_client.get(f"/sessions/{sid}/replay/").status_code == 200
    assert other.get(f"/sessions/{sid}/replay/").status_code == 404
    recordings = klass.teacher_client.get(f"/api/cohorts/{cid}/progress").json()["progress"][0]["labs"][0]["recordings"]
    assert [r["id"] for r in recordings] == [sid]


def test_the_sandbox_overview_shows_each_live_sandbox_with_idle_time_and_cgroup_numbers(worker, web, klass):
    session = start_session(klass.trainee_client)
    admin = signed_in(get_user_model().objects.create_user("ops", password="x", is_staff=True))
    with ws_connect(web, klass.trainee_client, session["ws"]) as ws:
        Terminal(ws).send("echo typing\r")
        data = wait_for(lambda: (d := admin.get("/api/ops/sandboxes").json()) and any(
            s["idle"] is not None and s["idle"] < 30 for h in d["hosts"] for s in h["sandboxes"]) and d, what="activity")
    (host,) = [h for h in data["hosts"] if h["host"] == worker.host]
    assert host["alive"] and host["capacity"] >= 1 and host["live"] == 1
    (box,) = host["sandboxes"]
    assert box["id"] == session["id"] and box["user"] == "ada" and box["remote"] is False
    assert box["cgroup"]["memory_bytes"] > 0 and box["cgroup"]["pids"] >= 1 and box["cgroup"]["cpu_seconds"] >= 0
    assert box["cgroup"]["memory_limit"] == 128 * 1024 * 1024
    page = admin.get("/ops/sandboxes/").content.decode()
    assert f'data-testid="sandbox-{session["id"]}"' in page and f'data-testid="memory-{session["id"]}"' in page


def test_the_dashboard_socket_shows_a_revealed_solution_without_a_reload(worker, web, klass):
    with ws_connect(web, klass.teacher_client, f"/ws/cohorts/{klass.cohort.id}/") as ws:
        assert events(ws, lambda s: s)[0]["type"] == "hello"
        resp = klass.trainee_client.post("/api/labs/smoke/steps/make-file/solution")
        assert resp.status_code == 200
        rows = events(ws, lambda s: any(e["row"]["steps"][0]["solution"] for e in s))
        assert rows[-1]["row"]["steps"][0]["solution"] is True and rows[-1]["user"] == klass.trainee.id
