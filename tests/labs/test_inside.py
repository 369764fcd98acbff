"""The inside views of a real sandbox through the API: its layers, the changes in its
container layer (read on the host side of the upperdir), and the container itself."""
from __future__ import annotations

import contextlib

import pytest
from django.test import Client

from tests.conftest import IS_ROOT, wait_for
from tests.labs.test_sessions import Terminal, smoke_lab, start_session, ws_connect  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.root, pytest.mark.sandbox,
    pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
    pytest.mark.django_db(transaction=True),
]


def run(term: Terminal, command: str, marker: str) -> None:
    """Type a command line and wait until it has finished (its marker is printed)."""
    term.send(f"{command}; echo {marker[:3]}''{marker[3:]}\r")
    term.expect(marker)


def changes(client: Client, sid: str) -> dict[str, dict]:
    resp = client.get(f"/api/sessions/{sid}/changes")
    assert resp.status_code == 200, resp.content
    return {c["path"]: c for c in resp.json()["changes"]}


def test_changes_after_echo_rm_mkdir_are_exactly_added_deleted_added(worker, web, smoke_lab, make_user, client, base_image):
    client.force_login(make_user())
    session = start_session(client)
    before = changes(client, session["id"])
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        run(term, "echo x > /etc/new; rm /etc/motd; mkdir -p /opt/d", "done-1")
        after = changes(client, session["id"])
    new = {path: c["kind"] for path, c in after.items() if before.get(path) != c}
    # What the shell itself writes (its history file) is the only other change allowed.
    shell_own = {p: k for p, k in new.items() if p.startswith("/root/.ash_history")}
    expected = {"/etc/new": "added", "/etc/motd": "deleted", "/opt/d": "added"}
    if not any((d / "opt").exists() for d in base_image.layer_dirs):
        expected["/opt"] = "added"  # mkdir -p made it too: docker diff lists it as well
    assert {p: k for p, k in new.items() if p not in shell_own} == expected
    assert after["/etc/new"]["size"] == 2
    lower_motd = next(d / "etc" / "motd" for d in reversed(base_image.layer_dirs) if (d / "etc" / "motd").exists())
    assert after["/etc/motd"]["lower_size"] == lower_motd.stat().st_size > 0  # bytes the whiteout wastes


def test_modified_and_opaque_entries_are_named_as_overlayfs_makes_them(worker, web, smoke_lab, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        # A copy-up of a lower file; a lower directory removed and made again (opaque).
        run(term, "echo more >> /etc/profile; rm -rf /usr/sbin && mkdir /usr/sbin && echo y > /usr/sbin/f", "done-2")
        after = changes(client, session["id"])
    assert after["/etc/profile"]["kind"] == "modified"
    assert after["/etc/profile"]["lower_size"] > 0
    assert after["/usr/sbin"]["kind"] == "opaque"
    assert after["/usr/sbin/f"]["kind"] == "added"
    assert not any(p.startswith("/usr/sbin/") and c["kind"] == "deleted" for p, c in after.items())


def test_layers_name_the_image_layers_bottom_to_top_and_the_upper_grows(worker, web, smoke_lab, make_user, client, base_image):
    client.force_login(make_user())
    session = start_session(client)
    first = client.get(f"/api/sessions/{session['id']}/layers").json()
    assert [layer["diff_id"] for layer in first["layers"]] == base_image.diff_ids
    assert [layer["chain_id"] for layer in first["layers"]] == base_image.chain_ids
    assert [layer["size"] for layer in first["layers"]] == [layer.size for layer in base_image.layers]
    assert all(layer["created_by"] for layer in first["layers"])
    with ws_connect(web, client, session["ws"]) as ws:
        run(Terminal(ws), "head -c 300000 /dev/zero > /big", "done-3")
    second = client.get(f"/api/sessions/{session['id']}/layers").json()
    assert second["upper"]["bytes"] - first["upper"]["bytes"] >= 300000


def test_the_container_view_shows_namespaces_cgroup_limits_mounts_and_processes(worker, web, smoke_lab, make_user, client, base_image):
    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        run(Terminal(ws), "unshare -u sleep 600 & sleep 0.2", "done-4")
        view = client.get(f"/api/sessions/{session['id']}/container").json()
    shared = {ns["type"]: ns["shared_with_host"] for ns in view["namespaces"]}
    for ns in ("pid", "mnt", "net", "uts", "ipc", "user", "cgroup"):
        assert shared[ns] is False, ns
    cg = view["cgroups"]
    assert cg["memory"]["limit"] == 128 << 20  # the smoke lab's memory_mb
    assert 0 < cg["memory"]["current"] <= cg["memory"]["limit"]
    assert cg["pids"]["limit"] == 64 and 2 <= cg["pids"]["current"] <= 64
    root = next(m for m in view["mounts"] if m["target"] == "/")
    assert root["type"] == "overlay"
    names = [entry["layer"] for entry in root["overlay"]["lowerdir"]]
    assert names == [f"layer {i} {d.split(':')[1][:12]}" for i, d in reversed(list(enumerate(base_image.diff_ids)))]
    assert root["overlay"]["upperdir"]["layer"] == "container layer (upperdir)"
    assert root["overlay"]["workdir"]["layer"] == "overlay workdir"
    procs = view["processes"]
    assert procs[0]["pid"] == 1 and procs[0]["uid"] == 0
    sleeper = next(p for p in procs if p["cmdline"].startswith("sleep 600"))
    assert set(sleeper["namespaces"]) == {"uts"}  # unshare -u gave it a UTS namespace of its own
    shell = next(p for p in procs if p["name"] in ("sh", "bash"))  # the login shell is bash (CJK line editing)
    assert shell["namespaces"] == {}


def test_only_the_owner_and_watchers_see_inside_and_only_the_owner_writes(worker, web, smoke_lab, make_user, client):
    client.force_login(make_user("owner"))
    session = start_session(client)
    sid = session["id"]
    reads = [f"/api/sessions/{sid}/{what}" for what in ("layers", "changes", "container", "checkpoints")]
    intruder = Client()
    intruder.force_login(make_user("intruder"))
    for url in reads:
        assert intruder.get(url).status_code == 404, url
    for what in ("checkpoints", "rewind", "commit"):
        resp = intruder.post(f"/api/sessions/{sid}/{what}", {"checkpoint": "x", "name": "n"}, content_type="application/json")
        assert resp.status_code == 404, what
    assert Client().get(reads[0]).status_code == 401
    staff = make_user("staff")
    staff.is_staff = True
    staff.save()
    watcher = Client()
    watcher.force_login(staff)
    for url in reads:
        assert watcher.get(url).status_code == 200, url
    assert watcher.post(f"/api/sessions/{sid}/checkpoints", {}, content_type="application/json").status_code == 404
    assert watcher.post(f"/api/sessions/{sid}/commit", {"name": "n"}, content_type="application/json").status_code == 404
    wait_for(lambda: client.get(reads[1]).status_code == 200, what="owner reads")


def drain(term: Terminal) -> None:
    """Take in everything that has arrived so far."""
    while True:
        before = (len(term.out), len(term.control))
        term.poll()
        if (len(term.out), len(term.control)) == before:
            return


def inside_messages(term: Terminal, view: str) -> list[dict]:
    term.poll()
    return [m for m in term.control if m.get("type") == "inside" and m.get("view") == view]


def test_a_subscribed_socket_gets_changes_live_and_nothing_once_unsubscribed(worker, web, smoke_lab, make_user, client):
    import json
    import time

    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        run(term, "echo before > /etc/early", "done-5")
        time.sleep(1.5)  # a socket that never subscribed is sent nothing of the kind
        assert inside_messages(term, "changes") == []
        ws.send(json.dumps({"type": "inside.subscribe", "views": ["changes", "layers", "container"]}))
        first = wait_for(lambda: inside_messages(term, "changes"), timeout=15, what="first changes")[0]
        assert "/etc/early" in {c["path"] for c in first["data"]["changes"]}
        wait_for(lambda: inside_messages(term, "layers") and inside_messages(term, "container"), timeout=15,
                 what="layers and container views")
        term.send("echo x > /etc/live-one\r")
        update = wait_for(lambda: [m for m in inside_messages(term, "changes")
                                   if "/etc/live-one" in {c["path"] for c in m["data"]["changes"]}],
                          timeout=15, what="the change sent live")[0]
        assert {c["path"]: c["kind"] for c in update["data"]["changes"]}["/etc/live-one"] == "added"
        ws.send(json.dumps({"type": "inside.unsubscribe"}))
        time.sleep(0.5)  # a read already in flight may still land
        drain(term)
        seen = len([m for m in term.control if m.get("type") == "inside"])
        run(term, "echo y > /etc/live-two", "done-6")
        time.sleep(3)
        drain(term)
        assert len([m for m in term.control if m.get("type") == "inside"]) == seen


def test_the_tree_names_each_files_layer_and_the_lower_copies_it_hides(worker, web, smoke_lab, make_user, client, base_image):
    client.force_login(make_user())
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        run(Terminal(ws), "echo more >> /etc/profile; rm /etc/motd; echo x > /etc/new", "done-7")
    resp = client.get(f"/api/sessions/{session['id']}/tree", {"path": "/etc"})
    assert resp.status_code == 200, resp.content
    tree = resp.json()
    entries = {e["name"]: e for e in tree["entries"]}
    top = len(base_image.layers)  # the container layer's index
    assert tree["layers"] == top + 1
    where = {name: i for i, d in enumerate(base_image.layer_dirs) for name in ("profile", "motd", "passwd")
             if (d / "etc" / name).exists()}
    assert entries["profile"]["layer"] == top and entries["profile"]["hides"] == [where["profile"]]
    assert entries["motd"]["deleted"] is True and entries["motd"]["hides"] == [where["motd"]]
    assert entries["new"]["layer"] == top and entries["new"]["hides"] == [] and entries["new"]["size"] == 2
    assert entries["passwd"]["layer"] == where["passwd"] and entries["passwd"]["hides"] == []
    assert client.get(f"/api/sessions/{session['id']}/tree", {"path": "/../../etc"}).status_code == 409
    assert client.get(f"/api/sessions/{session['id']}/tree", {"path": "/no/such"}).status_code == 409


def test_many_sockets_of_one_session_share_one_read_per_interval(worker, web, smoke_lab, make_user, client):
    import json
    import time

    from django.conf import settings

    from labs.redis import sync_redis

    client.force_login(make_user())
    session = start_session(client)
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(ws_connect(web, client, session["ws"])) for _ in range(4)]
        terms = [Terminal(ws) for ws in sockets]
        r = sync_redis()
        for ws in sockets:
            ws.send(json.dumps({"type": "inside.subscribe", "views": ["changes"]}))
        for term in terms:  # every socket gets the view, read or shared
            wait_for(lambda term=term: inside_messages(term, "changes"), timeout=15, what="changes on every socket")
        key = f"lab:inside:{session['id']}:changes"
        wait_for(lambda: r.exists(f"{key}:lock"), timeout=5, what="the session's read lock")
        # Reads on the host over a window: one per interval for the session, not one per socket.
        reads = lambda: sum("labs.inside.inside_read[" in line and "succeeded" in line  # noqa: E731
                            for line in worker.log.read_text(errors="replace").splitlines())
        before, t0 = reads(), time.monotonic()
        time.sleep(5)
        window = time.monotonic() - t0
        assert reads() - before <= window / settings.LAB_INSIDE_INTERVAL + 2 < 4 * window / settings.LAB_INSIDE_INTERVAL
        run(terms[0], "echo x > /etc/shared", "done-8")
        for term in terms:
            wait_for(lambda term=term: any("/etc/shared" in {c["path"] for c in m["data"]["changes"]}
                                           for m in inside_messages(term, "changes")), timeout=15, what="update everywhere")


def test_a_read_only_watcher_can_subscribe_but_not_type(worker, web, smoke_lab, make_user, client):
    import json

    client.force_login(make_user("owner"))
    session = start_session(client)
    staff = make_user("staff")
    staff.is_staff = True
    staff.save()
    watcher = Client()
    watcher.force_login(staff)
    with ws_connect(web, client, session["ws"]) as own, ws_connect(web, watcher, session["ws"]) as ws:
        run(Terminal(own), "echo w > /etc/watched", "done-9")
        term = Terminal(ws)
        ws.send(json.dumps({"type": "inside.subscribe", "views": ["changes"]}))
        got = wait_for(lambda: inside_messages(term, "changes"), timeout=15, what="changes for the watcher")[0]
        assert "/etc/watched" in {c["path"] for c in got["data"]["changes"]}
        assert term.control[0]["readonly"] is True
