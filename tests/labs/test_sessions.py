"""The walking skeleton end to end, without a browser: API → Celery → runc → relay →
Redis → WebSocket, with a real worker host and the real ASGI server."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.conftest import IS_ROOT, ROOT, wait_for, zombies_under

pytestmark = [
    pytest.mark.root, pytest.mark.sandbox,
    pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def smoke_lab(transactional_db):
    from labs.labfile import load_lab
    from labs.services import lab_import

    return lab_import(spec=load_lab(ROOT / "tests" / "fixtures" / "labs" / "smoke"))[0]


def start_session(client, slug: str = "smoke") -> dict:
    resp = client.post("/api/sessions/", {"lab": slug}, content_type="application/json")
    assert resp.status_code in (200, 201), resp.content
    sid = resp.json()["id"]
    return wait_for(lambda: (d := client.get(f"/api/sessions/{sid}/").json())["state"] == "ready" and d
                    or (d["state"] in ("failed", "lost") and pytest.fail(d["message"])),
                    timeout=30, what="sandbox ready")


def ws_connect(web: str, client, path: str, **kw):
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    return connect(web.replace("http", "ws") + path, additional_headers={"Cookie": cookie},
                   origin=web, open_timeout=10, **kw)


class Terminal:
    """Reads a terminal WebSocket until some text appears."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.out = b""
        self.control: list[dict] = []

    def send(self, text: str) -> None:
        self.ws.send(text.encode())

    def poll(self) -> None:
        """Take in whatever has arrived, without waiting."""
        try:
            msg = self.ws.recv(timeout=0.05)
        except TimeoutError:
            return
        if isinstance(msg, bytes):
            self.out += msg
        else:
            self.control.append(json.loads(msg))

    def expect(self, needle: str, timeout: float = 10) -> str:
        import time

        deadline = time.monotonic() + timeout
        while needle.encode() not in self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not seen; got {self.out[-500:]!r}")
            try:
                msg = self.ws.recv(timeout=left)
            except TimeoutError:
                continue
            if isinstance(msg, bytes):
                self.out += msg
            else:
                self.control.append(json.loads(msg))
        return self.out.decode(errors="replace")


def test_echo_arithmetic_comes_back_as_42_and_resize_reaches_stty(worker, web, smoke_lab, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        term.send("echo $((6*7))\r")
        term.expect("\r\n42\r\n")
        ws.send(json.dumps({"type": "resize", "cols": 101, "rows": 33}))
        term.send("stty size\r")
        term.expect("33 101")
        assert term.control[0]["type"] == "hello"


def test_check_fails_before_the_task_and_passes_after_with_the_scripts_message(worker, smoke_lab, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    url = f"/api/sessions/{session['id']}/check?wait=1"
    before = client.post(url, {"step": "make-file"}, content_type="application/json").json()
    assert before == {"passed": False, "message": "no /root/done yet"}
    from labs.models import Session
    from labs.hostconfig import host_config
    from sandbox.service import sandbox_exec

    assert sandbox_exec(host_config(), session["id"], "touch /root/done", timeout=5).exit_code == 0
    after = client.post(url, {"step": "make-file"}, content_type="application/json").json()
    assert after == {"passed": True, "message": "found /root/done"}
    from labs.models import StepProgress

    progress = StepProgress.objects.get(step__key="make-file", user=Session.objects.get(id=session["id"]).user)
    assert progress.attempts == 2 and progress.passed_by == "check"


def test_a_check_that_hangs_is_cut_off_and_reported(worker, smoke_lab, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    result = client.post(f"/api/sessions/{session['id']}/check?wait=1", {"step": "hangs"}, content_type="application/json").json()
    assert result["passed"] is False
    assert "2 s" in result["message"]


def test_reloading_reconnects_to_the_same_sandbox_and_replays_its_output(worker, web, smoke_lab, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        term.send("echo marker-$((40+2))\r")
        term.expect("marker-42")
    again = client.post("/api/sessions/", {"lab": "smoke"}, content_type="application/json")
    assert again.status_code == 200 and again.json()["id"] == session["id"]
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        term.expect("marker-42")  # replayed from the stream
        assert term.control[0] == {"type": "hello", "session": session["id"], "state": "ready", "replay": True, "message": "",
                                   "readonly": False, "tabs": []}


def test_another_users_session_is_refused_on_the_api_and_the_websocket(worker, web, smoke_lab, make_user, client):
    from django.test import Client

    client.force_login(make_user("owner"))
    session = start_session(client)
    intruder = Client()
    intruder.force_login(make_user("intruder"))
    assert intruder.get(f"/api/sessions/{session['id']}/").status_code == 404
    assert intruder.delete(f"/api/sessions/{session['id']}/").status_code == 404
    assert intruder.post(f"/api/sessions/{session['id']}/check", {"step": "make-file"}, content_type="application/json").status_code == 404
    with ws_connect(web, intruder, session["ws"]) as ws:
        with pytest.raises(Exception) as exc:
            while True:
                ws.recv(timeout=5)
        assert ws.close_code == 4403, exc.value


def test_stop_leaves_no_container_mount_session_directory_or_zombie(worker, smoke_lab, make_user, client):
    from labs.hostconfig import host_config
    from sandbox.runtime import runc_list

    client.force_login(make_user())
    session = start_session(client)
    cfg = host_config()
    assert session["id"] in {c["id"] for c in runc_list(cfg)}
    assert client.delete(f"/api/sessions/{session['id']}/").status_code == 204
    wait_for(lambda: client.get(f"/api/sessions/{session['id']}/").json()["state"] == "stopped", what="stopped")
    assert session["id"] not in {c["id"] for c in runc_list(cfg)}
    assert session["id"] not in Path("/proc/self/mountinfo").read_text()
    assert not (cfg.sessions_dir / session["id"]).exists()
    assert zombies_under(worker.holder.pid) == []  # the holder reaps container inits


def test_unknown_lab_and_malformed_json_get_clear_json_errors(make_user, client, transactional_db):
    client.force_login(make_user())
    resp = client.post("/api/sessions/", {"lab": "no-such-lab"}, content_type="application/json")
    assert resp.status_code == 404 and "no-such-lab" in resp.json()["error"]
    resp = client.post("/api/sessions/", b"{not json", content_type="application/json")
    assert resp.status_code == 400 and "malformed JSON" in resp.json()["error"]
    assert client.get("/api/labs/no-such-lab/").status_code == 404


def test_an_idle_terminal_stays_connected_past_the_redis_client_timeouts(worker, web, smoke_lab, make_user, client):
    import time

    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        quiet_until = time.monotonic() + 7  # longer than channels_redis' 5 s BZPOPMIN
        while time.monotonic() < quiet_until:
            try:
                ws.recv(timeout=quiet_until - time.monotonic())
            except TimeoutError:
                pass
        term.send("echo still-$((1+1))\r")
        term.expect("still-2")


def test_checks_speak_the_trainees_language_one_at_a_time(worker, smoke_lab, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    url = f"/api/sessions/{session['id']}/check?wait=1"
    en = client.post(url, {"step": "hangs"}, content_type="application/json", HTTP_ACCEPT_LANGUAGE="en").json()
    assert en == {"passed": False, "message": "The check did not finish within 2 s."}
    zh = client.post(url, {"step": "hangs"}, content_type="application/json", HTTP_ACCEPT_LANGUAGE="zh-hans").json()
    assert zh == {"passed": False, "message": "检查超时：2 s 内没有结束。"}
    # Inside the sandbox: LAB_LANG and the say helper every script gets.
    from labs.hostconfig import host_config
    from sandbox.service import sandbox_exec

    script = 'say "中文" "English"; echo "$LAB_LANG"'
    assert sandbox_exec(host_config(), session["id"], script, timeout=5, lang="en").output.split() == ["English", "en"]
    assert sandbox_exec(host_config(), session["id"], script, timeout=5, lang="zh-hans").output.split() == ["中文", "zh-hans"]
    assert sandbox_exec(host_config(), session["id"], script, timeout=5).output.split() == ["中文", "zh-hans"]
    # Auto-checks have no request: they use the language the trainee's last call was made in.
    from labs.services import session_lang

    assert session_lang(sid=session["id"]) == "zh-hans"
