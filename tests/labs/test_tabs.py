"""Terminal tabs: more shells in the same sandbox, each its own PTY held by the relay
(sandbox/relay/tabs.py), each with its own streams (labs/consumers_tabs.py)."""
from __future__ import annotations

import json
import os
import re
import signal

import pytest
from django.test import Client

from tests.conftest import IS_ROOT, wait_for
from tests.labs.test_sessions import Terminal, smoke_lab, start_session, ws_connect  # noqa: F401

pytestmark = [
    pytest.mark.root, pytest.mark.sandbox,
    pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
    pytest.mark.django_db(transaction=True),
]


def tab_path(session: dict, n: int, **query: object) -> str:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{session['ws']}tabs/{n}/" + (f"?{q}" if q else "")


def shell_facts(term: Terminal, tag: str) -> dict:
    """pid, host name and terminal size as the shell behind `term` sees them."""
    term.send(f"echo {tag}:$$:$(hostname):$(stty size | tr ' ' x):$(tty):\r")
    try:
        found = wait_for(lambda: term.poll() or re.search(rf"{tag}:(\d+):([\w-]+):(\d+x\d+):(\S+):".encode(), term.out),
                         what=f"facts of {tag}")
    except Exception as exc:
        raise AssertionError(f"{tag}: {term.control} {term.out[-300:]!r}") from exc
    pid, host, size, tty = (g.decode() for g in found.groups())
    return {"pid": pid, "host": host, "size": size, "tty": tty}


def closed_with(ws, timeout: float = 15, term: Terminal | None = None) -> int:
    """Read until the server closes the socket (into `term`, if given); its close code."""
    with pytest.raises(Exception):
        while True:
            msg = ws.recv(timeout=timeout)
            if term is not None and isinstance(msg, str):
                term.control.append(json.loads(msg))
    return ws.close_code


def processes(sid: str) -> str:
    from labs.hostconfig import host_config
    from sandbox.service import sandbox_exec

    return sandbox_exec(host_config(), sid, "ps -o pid,args", timeout=5).output


def test_a_tab_is_another_shell_in_the_same_sandbox_with_its_own_output_and_size(worker, web, smoke_lab, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as main_ws, \
            ws_connect(web, client, tab_path(session, 1, cols=101, rows=33)) as tab_ws:
        main, tab = Terminal(main_ws), Terminal(tab_ws)
        tab_facts, main_facts = shell_facts(tab, "tab"), shell_facts(main, "main")
        # Every viewer of the session hears that a tab opened (another window, a watcher).
        wait_for(lambda: main.poll() or {"type": "tabs", "tabs": [1]} in main.control, what="the tabs event")
        assert tab_facts["pid"] != main_facts["pid"]  # its own shell…
        assert tab_facts["host"] == main_facts["host"]  # …in the same sandbox
        assert tab_facts["size"] == "33x101"  # started with the tab's geometry
        assert tab_facts["tty"] != main_facts["tty"] and tab_facts["tty"].startswith("/dev/pts/")
        tab.send("echo tab-wrote > /root/from-tab; echo only-in-$((6*7))-tab\r")
        tab.expect("only-in-42-tab")
        main.send("cat /root/from-tab; echo main-$((7*7))-done\r")
        main.expect("main-49-done")
        assert b"tab-wrote" in main.out  # same files
        assert b"only-in-42-tab" not in main.out and b"main-49-done" not in tab.out  # separate output
        # A tab is not a sandbox: the host's count (its capacity) and idle times are per session.
        from django.conf import settings

        from labs.redis import sync_redis

        def beat() -> dict:
            return json.loads(sync_redis().get(f"lab:host:{settings.LAB_HOST_NAME}"))

        wait_for(lambda: beat()["activity"].get(session["id"], 0) >= beat()["ts"] - 10, what="a fresh heartbeat")
        assert beat()["live"] == 1 and list(beat()["activity"]) == [session["id"]]
        tab_ws.send(json.dumps({"type": "resize", "cols": 77, "rows": 21}))
        assert shell_facts(tab, "again")["size"] == "21x77"
        assert shell_facts(main, "main2")["size"] != "21x77"  # a tab's resize is its own
    # A reload: the sandbox's terminal says which tabs are open, and the tab replays its output.
    with ws_connect(web, client, session["ws"]) as main_ws:
        main = Terminal(main_ws)
        wait_for(lambda: main.poll() or main.control, what="hello")
        assert main.control[0]["tabs"] == [1]
    with ws_connect(web, client, tab_path(session, 1)) as tab_ws:
        tab = Terminal(tab_ws)
        tab.expect("only-in-42-tab")
        assert shell_facts(tab, "reloaded")["pid"] == tab_facts["pid"]


def test_exit_closes_the_tab_and_closing_it_ends_its_shell(worker, web, smoke_lab, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, tab_path(session, 1)) as tab_ws:
        tab = Terminal(tab_ws)
        shell_facts(tab, "one")
        tab.send("exit\r")
        assert closed_with(tab_ws, term=tab) == 4410
        assert {"type": "tab.closed", "tab": 1} in tab.control
    with ws_connect(web, client, tab_path(session, 2)) as tab_ws:
        tab = Terminal(tab_ws)
        pid = shell_facts(tab, "two")["pid"]
        tab.send("sleep 600 &\r")
        wait_for(lambda: "sleep 600" in processes(session["id"]), what="the tab's job")
        tab_ws.send(json.dumps({"type": "tab.close"}))
        assert closed_with(tab_ws) == 4410
    wait_for(lambda: not re.search(rf"^\s*{pid}\s", processes(session["id"]), re.M) and "sleep 600" not in processes(session["id"]),
             what="the closed tab's shell and job to end")
    with ws_connect(web, client, session["ws"]) as main_ws:
        main = Terminal(main_ws)
        wait_for(lambda: main.poll() or main.control, what="hello")
        assert main.control[0]["tabs"] == []
    # A reconnect to a closed tab does not open it again; a fresh open does.
    with ws_connect(web, client, tab_path(session, 2, since="1-0")) as tab_ws:
        assert closed_with(tab_ws) == 4410
    with ws_connect(web, client, tab_path(session, 2)) as tab_ws:
        tab = Terminal(tab_ws)
        assert shell_facts(tab, "reopened")["pid"] != pid
        assert b"sleep 600" not in tab.out  # a reused number starts from an empty screen


def test_tabs_are_capped_on_the_server_and_refused_to_others(worker, web, smoke_lab, make_user, client):
    from django.contrib.auth import get_user_model

    client.force_login(make_user("owner"))
    session = start_session(client)
    opened = [ws_connect(web, client, tab_path(session, n)) for n in (1, 2, 3)]
    try:
        for n, ws in enumerate(opened, 1):
            shell_facts(Terminal(ws), f"t{n}")
        with ws_connect(web, client, tab_path(session, 4)) as extra:
            assert closed_with(extra) == 4429
        intruder = Client()
        intruder.force_login(make_user("intruder"))
        for path in (tab_path(session, 1), tab_path(session, 3)):
            with ws_connect(web, intruder, path) as ws:
                assert closed_with(ws) == 4403
        staff = Client()
        staff.force_login(get_user_model().objects.create_user("teacher", password="pw-for-tests-123", is_staff=True))
        with ws_connect(web, staff, tab_path(session, 1)) as watch_ws:  # watching an open tab: read-only
            watch = Terminal(watch_ws)
            watch_ws.send(b"touch /root/pwned\r")
            watch_ws.send(json.dumps({"type": "tab.close"}))
            Terminal(opened[0]).send("echo seen-by-$((2*5))\r")
            watch.expect("seen-by-10")
            wait_for(lambda: watch.poll() or sum(m.get("type") == "error" for m in watch.control) >= 2,
                     what="two read-only errors")
            assert watch.control[0]["readonly"] is True
        assert "pwned" not in processes(session["id"]) and "/root/pwned" not in os.popen("true").read()
        from labs.hostconfig import host_config
        from sandbox.service import sandbox_exec

        assert sandbox_exec(host_config(), session["id"], "test -e /root/pwned; echo $?", timeout=5).output.strip() == "1"
        closed_tab = Client()
        closed_tab.force_login(get_user_model().objects.get(username="teacher"))
        with ws_connect(web, closed_tab, tab_path(session, 2)) as ws:
            shell_facts(Terminal(opened[1]), "still-open")  # the watcher did not close tab 1, nor 2
        # A watcher cannot open a tab that is not open.
        Terminal(opened[2]).send("exit\r")
        assert closed_with(opened[2]) == 4410
        with ws_connect(web, staff, tab_path(session, 3)) as ws:
            assert closed_with(ws) == 4404
    finally:
        for ws in opened:
            ws.close()


def test_a_relay_restart_keeps_the_tabs_shell_and_a_reset_or_stop_ends_the_tabs(worker, web, smoke_lab, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, tab_path(session, 1)) as tab_ws:
        tab = Terminal(tab_ws)
        tab.send("KEPT=in-tab\r")
        pid = shell_facts(tab, "before")["pid"]
        old_relay = worker.relay_pid
        os.kill(old_relay, signal.SIGKILL)
        tab.send("echo typed-$((30+5))-while-down\r")
        wait_for(lambda: worker.relay_pid not in (None, old_relay), timeout=30, what="a new relay")
        tab.expect("typed-35-while-down", timeout=20)
        tab.send("echo $KEPT-$$.\r")
        tab.expect(f"in-tab-{pid}.", timeout=20)
        assert tab.out.count(b"typed-35-while-down\r\n") == 1
        # A reset is a fresh sandbox: its tabs end.
        assert client.post(f"/api/sessions/{session['id']}/reset").status_code == 202
        assert closed_with(tab_ws, timeout=30) == 4410
    wait_for(lambda: client.get(f"/api/sessions/{session['id']}/").json()["state"] == "ready", what="ready after reset")
    with ws_connect(web, client, tab_path(session, 1)) as tab_ws:
        tab = Terminal(tab_ws)
        tab.send("echo kept=${KEPT:-gone}.\r")  # a new shell in the new sandbox (pids start again at 1)
        tab.expect("kept=gone.")
        # Stopping the sandbox ends its tabs and leaves nothing of them in Redis but expiring output.
        assert client.delete(f"/api/sessions/{session['id']}/").status_code == 204
        assert closed_with(tab_ws, timeout=30) == 4410
    from labs.redis import sync_redis
    from labs.hostconfig import host_config
    from sandbox.relay.holder import HolderClient

    r = sync_redis()
    wait_for(lambda: client.get(f"/api/sessions/{session['id']}/").json()["state"] == "stopped", what="stopped")
    sid = session["id"]
    held = HolderClient(host_config().holder_socket).take()
    for fd in held.values():
        os.close(fd)
    assert not [t for t in held if t.startswith(sid)]  # the holder let go of the sandbox's and its tabs' PTYs
    assert not r.exists(f"term:{sid}:tabs", f"term:{sid}.1:in")
    assert 0 < r.ttl(f"term:{sid}.1:out") <= 3600


def test_a_tab_has_its_own_flow_control_and_a_stalled_tab_does_not_hold_up_the_others(worker, web, smoke_lab, make_user, client):
    import time

    from sandbox.relay.server import FRAME_BYTES, WINDOW_BYTES

    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as main_ws, ws_connect(web, client, tab_path(session, 1)) as tab_ws:
        main, tab = Terminal(main_ws), Terminal(tab_ws)
        shell_facts(tab, "ready")
        tab.send("yes tab-flow-line\r")
        tab.expect("tab-flow-line\r\ntab")
        settle = time.monotonic() + 3  # never acknowledging: the relay stops reading the tab's PTY
        while time.monotonic() < settle:
            tab.poll()
        received = len(tab.out)
        assert received <= WINDOW_BYTES + 2 * FRAME_BYTES + 4096
        for _ in range(20):
            tab.poll()
        assert len(tab.out) - received <= FRAME_BYTES  # it stays stopped
        main.send("echo main-still-$((9*9))\r")  # the sandbox's own terminal is not held up
        main.expect("main-still-81")
        tab_ws.send(json.dumps({"type": "ack", "id": [m["id"] for m in tab.control if m["type"] == "pos"][-1]}))
        wait_for(lambda: tab.poll() or len(tab.out) > received + FRAME_BYTES, what="the tab's output to flow after the ack")
        tab_ws.send(json.dumps({"type": "tab.close"}))  # closing ends `yes` with its shell
        assert closed_with(tab_ws, timeout=30) == 4410
    wait_for(lambda: "tab-flow-line" not in processes(session["id"]), what="yes to end with its tab")


def test_a_rewind_restarts_the_sandbox_and_ends_its_tabs_cleanly(worker, web, smoke_lab, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    sid = session["id"]
    checkpoint = client.post(f"/api/sessions/{sid}/checkpoints", {}, content_type="application/json").json()
    with ws_connect(web, client, tab_path(session, 1)) as tab_ws:
        tab = Terminal(tab_ws)
        shell_facts(tab, "before-rewind")
        resp = client.post(f"/api/sessions/{sid}/rewind", {"checkpoint": checkpoint["id"]}, content_type="application/json")
        assert resp.status_code == 202, resp.content
        assert closed_with(tab_ws, timeout=60, term=tab) == 4410
        assert {"type": "tab.closed", "tab": 1} in tab.control
    wait_for(lambda: client.get(f"/api/sessions/{sid}/").json()["state"] == "ready", timeout=60, what="ready after the rewind")
    with ws_connect(web, client, session["ws"]) as main_ws:
        main = Terminal(main_ws)
        wait_for(lambda: main.poll() or main.control, what="hello")
        assert main.control[0]["tabs"] == []  # the restarted sandbox has no tabs…
    with ws_connect(web, client, tab_path(session, 1)) as tab_ws:
        shell_facts(Terminal(tab_ws), "after-rewind")  # …and opens new ones
