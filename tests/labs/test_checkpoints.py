"""The container layer as a real layer, on real sandboxes: checkpoints (by hand and when
a step passes), rewinding to one, committing the container as an image that skopeo
reads, quotas, collection, and one user never seeing another's."""
from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from sandbox.images import spec
from sandbox.images.gc import collect
from sandbox.mounts import mounts_under
from sandbox.images.store import ImageStore
from tests.conftest import IS_ROOT, wait_for
from tests.labs.test_inside import run
from tests.labs.test_sessions import Terminal, smoke_lab, start_session, ws_connect  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.root, pytest.mark.sandbox,
    pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
    pytest.mark.django_db(transaction=True),
]


def store() -> ImageStore:
    return ImageStore(Path(settings.LAB_DATA_DIR) / "images", uid_base=settings.LAB_SANDBOX_UID)


def layer_names(path: Path) -> set[str]:
    """Member names of a layer tar."""
    with tarfile.open(path) as tar:
        return {m.name.rstrip("/") for m in tar}


def post(client: Client, url: str, data: dict | None = None):
    return client.post(url, data or {}, content_type="application/json")


def sh(sid: str, script: str) -> tuple[int, str]:
    from labs.hostconfig import host_config
    from sandbox.service import sandbox_exec

    res = sandbox_exec(host_config(), sid, script, timeout=10)
    return res.exit_code, res.output.strip()


def test_a_checkpoint_is_the_upper_as_a_content_addressed_oci_changeset(worker, web, smoke_lab, make_user, client):
    client.force_login(make_user())
    session = start_session(client)
    sid = session["id"]
    with ws_connect(web, client, session["ws"]) as ws:
        run(Terminal(ws), "echo x > /etc/new; rm /etc/motd; mkdir -p /opt/d", "done-c1")
    resp = post(client, f"/api/sessions/{sid}/checkpoints")
    assert resp.status_code == 201, resp.content
    cp = resp.json()
    assert set(cp) >= {"id", "diff_id", "size", "step"} and cp["step"] == "make-file"
    listed = client.get(f"/api/sessions/{sid}/checkpoints").json()["checkpoints"]
    assert [c["id"] for c in listed] == [cp["id"]] and listed[0]["auto"] is False
    image = store().resolve(f"lab-checkpoints/{sid}:{cp['id']}")
    top = image.layers[-1]
    assert top.diff_id == cp["diff_id"] and top.size == cp["size"]
    blob = store().blob_path(top.digest)
    with open(blob, "rb") as f:
        assert spec.sha256_stream(f)[0] == cp["diff_id"]  # content-addressed: diff_id is the tar's sha256
    names = layer_names(blob)
    assert {"etc/new", "etc/.wh.motd", "opt/d"} <= names  # OCI whiteout for the overlayfs 0/0 device
    assert "etc/motd" not in names


def test_rewind_restores_files_removes_later_ones_and_keeps_progress(worker, web, smoke_lab, make_user, client):
    from labs.models import StepProgress

    user = make_user()
    client.force_login(user)
    session = start_session(client)
    sid = session["id"]
    with ws_connect(web, client, session["ws"]) as ws:
        term = Terminal(ws)
        run(term, "echo one > /etc/before", "done-r1")
        cp = post(client, f"/api/sessions/{sid}/checkpoints").json()
        run(term, "echo two > /etc/before; echo later > /etc/later; touch /root/done", "done-r2")
        assert post(client, f"/api/sessions/{sid}/check?wait=1", {"step": "make-file"}).json()["passed"] is True
        # Passing a step takes a checkpoint by itself.
        listed = wait_for(lambda: (c := client.get(f"/api/sessions/{sid}/checkpoints").json()["checkpoints"])
                          and len(c) == 2 and c, what="automatic checkpoint")
        assert listed[1]["auto"] is True and listed[1]["step"] == "make-file"
        assert post(client, f"/api/sessions/{sid}/rewind", {"checkpoint": cp["id"]}).status_code == 202

        def states() -> list[str]:
            term.poll()
            seen = [m["state"] for m in term.control if m.get("type") == "state"]
            if any(s in ("failed", "lost") for s in seen):
                pytest.fail(f"rewind failed: {term.control}")
            return seen

        wait_for(lambda: "ready" in states(), timeout=60, what="ready after the rewind")
        states = states()
        assert states[states.index("ready") - 1] == "starting"
        term.send("echo back-$((20+22))\r")
        term.expect("back-42")  # the terminal carries on with the rewound shell
    assert sh(sid, "cat /etc/before") == (0, "one")
    assert sh(sid, "test -e /etc/later")[0] != 0
    assert sh(sid, "test -e /root/done")[0] == 0  # the home is a volume: a rewind keeps it
    assert StepProgress.objects.get(user=user, step__key="make-file").passed_at is not None
    layers = client.get(f"/api/sessions/{sid}/layers").json()["layers"]
    assert layers[-1]["diff_id"] == cp["diff_id"] and f"checkpoint {cp['id']}" in layers[-1]["created_by"]
    changed = {c["path"] for c in client.get(f"/api/sessions/{sid}/changes").json()["changes"]}
    assert "/etc/before" not in changed  # it is in a lower layer now, under a fresh upper
    # The old container layer was set aside on the session's tmpfs and is gone after the
    # prompt; the new stack is mounted once, its views on the new upperdir.
    layout = _layout(sid)
    wait_for(lambda: not list(layout.scratch.glob("aside-*")) and not list(layout.root.glob("views-aside-*")),
             what="the old container layer and views removed")
    points = mounts_under(layout.root)
    assert len(points) == len(set(points))
    assert sh(sid, "echo new > /etc/after; test -e /var/lib/lab/container/upper/etc/after && "
                   "test ! -e /var/lib/lab/container/upper/etc/later")[0] == 0


def _layout(sid: str):
    from labs.hostconfig import host_config
    from sandbox.service import layout_for

    return layout_for(host_config(), sid)


def _leftovers(sid: str) -> list[str]:
    """What of a session's sandbox is still on this host: its directory, mounts, runc
    container, cgroups, processes."""
    from sandbox.cgroups import cgroup_parent_dirs
    from labs.hostconfig import host_config
    from sandbox.runtime import runc_list

    cfg = host_config()
    left = [str(p) for p in mounts_under(_layout(sid).root)]
    left += [str(_layout(sid).root)] if _layout(sid).root.exists() else []
    left += [f"runc {c['id']}" for c in runc_list(cfg) if c["id"] == sid]
    left += [str(p) for p in cgroup_parent_dirs(f"{cfg.cgroup_parent}/{sid}")]
    return left


def test_a_rewind_cut_short_leaves_nothing_once_the_session_ends(worker, smoke_lab, make_user, client):
    """The state a worker SIGKILLed mid-rewind leaves (the old container gone, the stack
    remounted over a fresh upperdir, the old one set aside, no new container yet) is all
    inside the session directory: stopping the session removes every part of it."""
    from labs.hostconfig import host_config
    from sandbox.images.store import ImageStore
    from sandbox.inside.rewind import container_kill
    from sandbox.service import session_uid
    from sandbox.snapshots import snapshot_restack

    client.force_login(make_user())
    sid = start_session(client)["id"]
    assert sh(sid, "echo later > /etc/later")[0] == 0
    cfg = host_config()
    image = ImageStore(cfg.images_dir, uid_base=cfg.uid_base).resolve(smoke_lab.image)
    container_kill(cfg, sid)
    ranges = cfg.uid_ranges()
    aside = snapshot_restack(image=image, layout=_layout(sid), layers_root=cfg.images_dir / "layers",
                             uid=session_uid(cfg, sid), stored_uid=cfg.uid_base, id_count=cfg.id_count,
                             pins=ranges.pins if ranges else None)
    assert (aside / "upper" / "etc" / "later").exists()
    assert client.delete(f"/api/sessions/{sid}/").status_code in (200, 202, 204)
    wait_for(lambda: client.get(f"/api/sessions/{sid}/").json()["state"] in ("stopped", "lost"), timeout=30, what="stopped")
    wait_for(lambda: not _leftovers(sid), timeout=10, what="nothing of the session left")
    assert _leftovers(sid) == []


def test_rewind_to_an_unknown_or_anothers_checkpoint_is_404(worker, smoke_lab, make_user, client):
    client.force_login(make_user("owner"))
    mine = start_session(client)
    cp = post(client, f"/api/sessions/{mine['id']}/checkpoints").json()
    other = Client()
    other.force_login(make_user("other"))
    theirs = start_session(other)
    assert post(other, f"/api/sessions/{theirs['id']}/rewind", {"checkpoint": cp["id"]}).status_code == 404
    assert post(client, f"/api/sessions/{mine['id']}/rewind", {"checkpoint": "nope"}).status_code == 404
    assert other.get(f"/api/sessions/{mine['id']}/checkpoints").status_code == 404


@pytest.mark.skipif(not shutil.which("skopeo"), reason="needs skopeo (apt-get install skopeo)")
def test_commit_makes_an_image_skopeo_reads_with_one_more_layer_and_the_whiteout(worker, web, smoke_lab, make_user, client, base_image, tmp_path):
    from sandbox.images.oci import export_image

    client.force_login(make_user("owner"))
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        run(Terminal(ws), "echo x > /etc/new; rm /etc/motd", "done-m1")
    resp = post(client, f"/api/sessions/{session['id']}/commit", {"name": "mine", "tag": "v1"})
    assert resp.status_code == 201, resp.content
    made = resp.json()
    assert made["image"] == "owner/mine:v1" and spec.DIGEST.match(made["digest"])
    image = store().resolve("owner/mine:v1")
    assert image.manifest_digest == made["digest"]
    assert image.diff_ids[:-1] == base_image.diff_ids and len(image.diff_ids) == len(base_image.diff_ids) + 1
    assert image.config["config"] == base_image.config["config"]  # Cmd, Env, WorkingDir kept
    assert image.config["history"][:-1] == base_image.config["history"]
    assert image.config["history"][-1]["created_by"] == "/bin/sh -l"
    assert image.config["author"] == "owner"
    archive = tmp_path / "mine.tar"
    export_image(image, store(), archive, fmt="docker")
    info = json.loads(subprocess.run(["skopeo", "inspect", f"docker-archive:{archive}"],
                                     capture_output=True, text=True, check=True).stdout)
    assert len(info["Layers"]) == len(base_image.layers) + 1
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        outer.extract(manifest[0]["Layers"][-1], tmp_path, filter="data")
    names = layer_names(tmp_path / manifest[0]["Layers"][-1])
    assert "etc/.wh.motd" in names and "etc/new" in names
    assert client.get("/api/images/").json()["images"][0]["image"] == "owner/mine:v1"
    other = Client()
    other.force_login(make_user("other"))
    assert other.get("/api/images/").json() == {"images": []}


def test_quotas_refuse_a_checkpoint_or_image_past_the_users_limit(worker, smoke_lab, make_user, client, settings):
    settings.LAB_USER_CHECKPOINTS = 1
    settings.LAB_USER_IMAGES = 1
    client.force_login(make_user())
    session = start_session(client)
    base = f"/api/sessions/{session['id']}"
    assert post(client, f"{base}/checkpoints").status_code == 201
    refused = post(client, f"{base}/checkpoints")
    assert refused.status_code == 409 and "1" in refused.json()["error"]
    assert post(client, f"{base}/commit", {"name": "one", "tag": "v1"}).status_code == 201
    assert post(client, f"{base}/commit", {"name": "two", "tag": "v1"}).status_code == 409
    assert post(client, f"{base}/commit", {"name": "one", "tag": "v1"}).status_code == 201  # replacing is fine
    assert post(client, f"{base}/commit", {"name": "Bad Name"}).status_code == 400


def test_a_name_that_is_not_the_users_own_is_never_overwritten(worker, smoke_lab, make_user, client, base_image):
    user = make_user("lab")  # "lab/base:latest" is the platform's image
    client.force_login(user)
    session = start_session(client)
    resp = post(client, f"/api/sessions/{session['id']}/commit", {"name": "base", "tag": "latest"})
    assert resp.status_code == 201 and resp.json()["image"] == f"u{user.pk}-lab/base:latest"
    assert store().resolve("lab/base:latest").diff_ids == base_image.diff_ids
    # An image an admin put in the store under the user's name is not theirs to replace.
    store().tag_manifest(f"u{user.pk}-lab/imported:1", (base_image.manifest_digest, 0))
    resp = post(client, f"/api/sessions/{session['id']}/commit", {"name": "imported", "tag": "1"})
    assert resp.status_code == 409 and "imported" in resp.json()["error"]
    assert store().resolve(f"u{user.pk}-lab/imported:1").diff_ids == base_image.diff_ids


def test_checkpoints_go_with_their_session_and_orphans_with_image_gc(worker, smoke_lab, make_user, client):
    from django.core.management import call_command

    from labs.models import Checkpoint, Session

    client.force_login(make_user())
    session = start_session(client)
    sid = session["id"]
    assert sh(sid, f"echo {sid} > /etc/unique")[0] == 0  # a layer no other test's image shares
    cp = post(client, f"/api/sessions/{sid}/checkpoints").json()
    blob = store().blob_path(store().resolve(f"lab-checkpoints/{sid}:{cp['id']}").layers[-1].digest)
    assert client.delete(f"/api/sessions/{sid}/").status_code == 204
    wait_for(lambda: client.get(f"/api/sessions/{sid}/").json()["state"] == "stopped", what="stopped")
    assert not Checkpoint.objects.filter(session_id=sid).exists()
    assert not [r for r in store().refs() if r.startswith(f"lab-checkpoints/{sid}:")]
    collect(store())
    assert not blob.exists()
    # A session that ended without its host (lost): `image gc` untags what it left.
    second = start_session(client)
    cp2 = post(client, f"/api/sessions/{second['id']}/checkpoints").json()
    Session.objects.filter(id=second["id"]).update(state=Session.State.LOST)
    call_command("image", "gc")
    assert f"lab-checkpoints/{second['id']}:{cp2['id']}" not in store().refs()
    assert not Checkpoint.objects.filter(id=cp2["id"]).exists()


def test_the_owner_starts_a_lab_on_their_committed_image_and_nobody_else_can(worker, web, smoke_lab, make_user, client, base_image):
    client.force_login(make_user("owner"))
    first = start_session(client)
    with ws_connect(web, client, first["ws"]) as ws:
        run(Terminal(ws), "echo x > /etc/new; rm /etc/motd", "done-s1")
    # The store outlives each test's database: a name no other test commits.
    made = post(client, f"/api/sessions/{first['id']}/commit", {"name": "startable", "tag": "v1"}).json()
    assert client.delete(f"/api/sessions/{first['id']}/").status_code == 204
    wait_for(lambda: client.get(f"/api/sessions/{first['id']}/").json()["state"] == "stopped", what="stopped")
    other = Client()
    other.force_login(make_user("other"))
    assert post(other, "/api/sessions/", {"lab": "smoke", "image": made["image"]}).status_code == 404
    resp = post(client, "/api/sessions/", {"lab": "smoke", "image": made["image"]})
    assert resp.status_code == 201, resp.content
    sid = resp.json()["id"]
    wait_for(lambda: client.get(f"/api/sessions/{sid}/").json()["state"] == "ready", timeout=30, what="ready")
    assert sh(sid, "cat /etc/new; test -e /etc/motd || echo no-motd") == (0, "x\nno-motd")
    layers = client.get(f"/api/sessions/{sid}/layers").json()["layers"]
    assert [layer["diff_id"] for layer in layers] == store().resolve(made["image"]).diff_ids
    assert len(layers) == len(base_image.layers) + 1
    # A reset goes back to the committed image, not to the lab's.
    assert post(client, f"/api/sessions/{sid}/reset").status_code == 202
    wait_for(lambda: client.get(f"/api/sessions/{sid}/").json()["state"] == "ready", timeout=30, what="ready again")
    assert sh(sid, "cat /etc/new")[1] == "x"


def test_checkpoints_after_rewinds_are_squashed_and_keep_every_change(worker, smoke_lab, make_user, client, base_image, settings):
    settings.LAB_CHECKPOINT_SQUASH = 2
    client.force_login(make_user())
    sid = start_session(client)["id"]

    def checkpoint_and_rewind(script: str) -> dict:
        assert sh(sid, script)[0] == 0
        cp = post(client, f"/api/sessions/{sid}/checkpoints").json()
        assert post(client, f"/api/sessions/{sid}/rewind", {"checkpoint": cp["id"]}).status_code == 202
        wait_for(lambda: client.get(f"/api/sessions/{sid}/").json()["state"] == "ready", timeout=30, what="rewound")
        return cp

    checkpoint_and_rewind("echo 1 > /etc/f1")
    checkpoint_and_rewind("echo 2 > /etc/f2; rm /etc/motd")
    assert len(client.get(f"/api/sessions/{sid}/layers").json()["layers"]) == len(base_image.layers) + 2
    third = checkpoint_and_rewind("echo 3 > /etc/f3; echo one > /etc/f1")  # a third in a row: squashed
    layers = client.get(f"/api/sessions/{sid}/layers").json()["layers"]
    assert len(layers) == len(base_image.layers) + 1 and layers[-1]["diff_id"] == third["diff_id"]
    assert [layer["diff_id"] for layer in layers[:-1]] == base_image.diff_ids
    assert sh(sid, "cat /etc/f1 /etc/f2 /etc/f3; test -e /etc/motd || echo gone") == (0, "one\n2\n3\ngone")
    names = layer_names(store().blob_path(store().resolve(f"lab-checkpoints/{sid}:{third['id']}").layers[-1].digest))
    assert {"etc/f1", "etc/f2", "etc/f3", "etc/.wh.motd"} <= names


def test_checks_and_setups_run_while_checkpoints_are_taken(worker, smoke_lab, make_user, client):
    """A checkpoint freezes the sandbox, and `runc exec` refuses a frozen container (which
    once lost a step's setup that ran while a step's checkpoint was taken): execs wait for
    the thaw (sandbox/freeze.py)."""
    import threading

    client.force_login(make_user())
    sid = start_session(client)["id"]
    statuses: list[int] = []

    def checkpoints() -> None:
        for _ in range(5):
            statuses.append(post(client, f"/api/sessions/{sid}/checkpoints").status_code)

    thread = threading.Thread(target=checkpoints)
    thread.start()
    results = []
    while thread.is_alive() or len(results) < 10:
        results.append(sh(sid, "echo alive"))
    thread.join()
    assert statuses == [201] * 5
    assert set(results) == {(0, "alive")}


def test_a_worker_sigkilled_during_a_rewind_leaves_nothing_once_the_session_ends(worker, smoke_lab, make_user, client):
    """The whole Celery worker (pool processes first) is SIGKILLed as soon as the rewind
    has set the old container layer aside; whatever point it reached, the session's stop
    leaves no mount, directory, runc container or cgroup behind."""
    import os
    import signal
    import time

    from tests.conftest import children_of

    client.force_login(make_user())
    sid = start_session(client)["id"]
    cp = post(client, f"/api/sessions/{sid}/checkpoints").json()
    scratch = _layout(sid).scratch
    assert post(client, f"/api/sessions/{sid}/rewind", {"checkpoint": cp["id"]}).status_code == 202
    try:
        deadline = time.monotonic() + 20
        while not list(scratch.glob("aside-*")) and time.monotonic() < deadline:
            time.sleep(0.001)
        for pid in [*children_of(worker.proc.pid), worker.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        worker.proc.wait()
    finally:
        worker.start_worker_again()
    assert client.delete(f"/api/sessions/{sid}/").status_code in (200, 202, 204)
    wait_for(lambda: client.get(f"/api/sessions/{sid}/").json()["state"] in ("stopped", "lost", "failed"),
             timeout=60, what="the session ended")
    wait_for(lambda: not _leftovers(sid), timeout=30, what="nothing of the session left")
    assert _leftovers(sid) == []
