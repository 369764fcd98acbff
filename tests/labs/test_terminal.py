"""The terminal beyond echo: shared tabs, read-only watching, UTF-8, recordings."""
from __future__ import annotations

import json

import pytest
from django.test import Client

from tests.conftest import IS_ROOT, wait_for
from tests.labs.test_sessions import Terminal, smoke_lab, start_session, ws_connect  # noqa: F401

pytestmark = [
    pytest.mark.root, pytest.mark.sandbox,
    pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
    pytest.mark.django_db(transaction=True),
]
# 中文 and box drawing: three-byte UTF-8 sequences a PTY read may split anywhere.
WIDE = "容器镜像层─┼─联合文件系统" * 200


def test_two_tabs_of_the_same_session_see_the_same_terminal(worker, web, smoke_lab, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as a, ws_connect(web, client, session["ws"]) as b:
        tab_a, tab_b = Terminal(a), Terminal(b)
        tab_a.send("echo from-tab-$((10+1))\r")
        tab_b.expect("from-tab-11")


def test_staff_watch_read_only_and_their_keystrokes_never_reach_the_shell(worker, web, smoke_lab, make_user, client):
    from django.contrib.auth import get_user_model

    from labs.hostconfig import host_config
    from sandbox.service import sandbox_exec

    client.force_login(make_user("trainee"))
    session = start_session(client)
    staff = get_user_model().objects.create_user("teacher", password="pw-for-tests-123", is_staff=True)
    watcher = Client()
    watcher.force_login(staff)
    with ws_connect(web, client, session["ws"]) as own, ws_connect(web, watcher, session["ws"]) as watch:
        trainee_term, watch_term = Terminal(own), Terminal(watch)
        watch.send(b"touch /root/pwned\r")
        watch.send(json.dumps({"type": "resize", "cols": 20, "rows": 5}))
        trainee_term.send("echo visible-$((3*3))\r")
        watch_term.expect("visible-9")  # the watcher sees the terminal
        assert watch_term.control[0]["readonly"] is True
        # The answer to the watcher's keystrokes may come after the replayed output.
        wait_for(lambda: watch_term.poll() or any(m.get("type") == "error" and "read-only" in m["message"]
                                                  for m in watch_term.control), timeout=5, what="the read-only error")
    res = sandbox_exec(host_config(), session["id"], "test -e /root/pwned; echo $?; stty size < /dev/null 2>/dev/null", timeout=5)
    assert res.output.split()[0] == "1"  # the watcher's command never ran


def test_other_trainees_cannot_watch(worker, web, smoke_lab, make_user, client):
    client.force_login(make_user("owner"))
    session = start_session(client)
    other = Client()
    other.force_login(make_user("other"))
    assert other.get(f"/sessions/{session['id']}/replay/").status_code == 404
    with ws_connect(web, other, session["ws"]) as ws:
        with pytest.raises(Exception):
            ws.recv(timeout=5)
    assert ws.close_code == 4403


def test_utf8_split_across_reads_arrives_whole(worker, web, smoke_lab, make_user, client):
    from labs.hostconfig import host_config
    from sandbox.service import sandbox_exec

    client.force_login(make_user())
    session = start_session(client)
    sandbox_exec(host_config(), session["id"], f"printf '%s' '{WIDE}' > /root/wide.txt", timeout=5)
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        term.send("cat /root/wide.txt; echo; echo END-$((5+5))\r")
        term.expect("END-10")
        assert WIDE in term.out.decode("utf-8")  # byte-exact: no replacement characters


def test_a_finished_session_has_an_asciicast_recording_with_output_and_resizes(worker, web, smoke_lab, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        ws.send(json.dumps({"type": "resize", "cols": 101, "rows": 33}))
        term.send("echo 录制-$((6*7)); stty size\r")
        term.expect("33 101")
    assert client.get(f"/api/sessions/{session['id']}/recording").status_code == 404  # still running
    client.delete(f"/api/sessions/{session['id']}/")
    wait_for(lambda: client.get(f"/api/sessions/{session['id']}/recording").status_code == 200, what="recording saved")
    cast = client.get(f"/api/sessions/{session['id']}/recording").content.decode()
    header, *events = [json.loads(line) for line in cast.splitlines()]
    assert header["version"] == 2 and header["width"] == 80
    assert ["r", "101x33"] in [e[1:] for e in events]
    output = "".join(e[2] for e in events if e[1] == "o")
    assert "录制-42" in output and "33 101" in output
    assert all(a[0] <= b[0] for a, b in zip(events, events[1:]))  # times only go forward
    assert client.get(f"/sessions/{session['id']}/replay/").status_code == 200


def test_full_screen_vi_works_and_redraws_after_a_resize(worker, web, smoke_lab, make_user, client):
    from labs.hostconfig import host_config
    from sandbox.service import sandbox_exec

    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        term.send("echo $TERM\r")
        term.expect("xterm-256color")
        term.send("vi /root/poem.txt\r")
        term.expect("\x1b[")  # vi draws with escape sequences
        before = len(term.out)
        ws.send(json.dumps({"type": "resize", "cols": 60, "rows": 15}))
        # SIGWINCH: vi redraws its screen (busybox vi ends a redraw on the status line)
        wait_for(lambda: term.poll() or len(term.out) > before + 20, what="a redraw after the resize")
        term.send("i容器 layers")
        term.expect("容器 layers")
        mark = len(term.out)
        term.send("\x1b")  # alone, or vi reads ESC + ":" as one escape sequence
        wait_for(lambda: term.poll() or b"- /root/poem.txt [Modified]" in term.out[mark:], what="vi back in command mode")
        term.send(":wq\r")
        term.send("echo saved-$((1+1))\r")
        term.expect("saved-2")
    assert sandbox_exec(host_config(), session["id"], "cat /root/poem.txt", timeout=5).output == "容器 layers\n"


def test_a_reader_that_does_not_acknowledge_stops_output_and_ctrl_c_still_works(worker, web, smoke_lab, make_user, client):
    import time

    from sandbox.relay.server import FRAME_BYTES, WINDOW_BYTES

    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        term.send("yes flow-control-line\r")
        term.expect("flow-control-line\r\nflow")
        # never acknowledging: the relay stops reading the PTY after its window
        settle = time.monotonic() + 3
        while time.monotonic() < settle:
            term.poll()
        received = len(term.out)
        assert received <= WINDOW_BYTES + 2 * FRAME_BYTES + 4096
        for _ in range(20):
            term.poll()
        assert len(term.out) - received <= FRAME_BYTES  # it stays stopped: `yes` is blocked in write
        # acknowledging what we have lets it flow again
        ws.send(json.dumps({"type": "ack", "id": [m["id"] for m in term.control if m["type"] == "pos"][-1]}))
        wait_for(lambda: term.poll() or len(term.out) > received + FRAME_BYTES, what="output to flow after the ack")
        # Ctrl-C reaches the shell through the same path and `yes` stops
        acked = [None]

        def read_and_ack(needle: bytes, start: int = 0) -> bool:
            """Read like the page: acknowledge every pos; True once needle arrived."""
            term.poll()
            pos = [m["id"] for m in term.control if m["type"] == "pos"]
            if pos and pos[-1] != acked[0]:
                acked[0] = pos[-1]
                ws.send(json.dumps({"type": "ack", "id": acked[0]}))
            return needle in term.out[start:]

        term.send("\x03")
        wait_for(lambda: read_and_ack(b"^C", received), timeout=15, what="^C echoed")
        term.send("echo stopped-$((7*6))\r")
        wait_for(lambda: read_and_ack(b"stopped-42"), timeout=15, what="the prompt after Ctrl-C")
        assert b"stopped-42" in term.out
