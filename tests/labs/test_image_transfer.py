"""Committed images leave their host: the owner downloads one from the web (streamed
from the host through Redis; skopeo reads the bytes), and a session started on one runs
on a host whose store did not hold it (the blobs are fetched and checked)."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.test import Client

from tests.conftest import IS_ROOT, _subprocess_env, start_worker, wait_for
from tests.labs.test_checkpoints import post, store
from tests.labs.test_inside import run
from tests.labs.test_sessions import Terminal, smoke_lab, start_session, ws_connect  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.root, pytest.mark.sandbox,
    pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
    pytest.mark.django_db(transaction=True),
]


def _commit(client: Client, web: str, name: str) -> dict:
    """A session with /etc/new added and /etc/motd removed, committed as <user>/<name>:v1."""
    session = start_session(client)
    with ws_connect(web, client, session["ws"]) as ws:
        run(Terminal(ws), "echo x > /etc/new; rm /etc/motd", "done-t1")
    resp = post(client, f"/api/sessions/{session['id']}/commit", {"name": name, "tag": "v1"})
    assert resp.status_code == 201, resp.content
    assert client.delete(f"/api/sessions/{session['id']}/").status_code == 204
    return resp.json()


def _download(web: str, client: Client | None, ref: str, fmt: str, dest: Path) -> requests.Response:
    cookies = {"sessionid": client.cookies["sessionid"].value} if client is not None else {}
    with requests.get(f"{web}/api/images/download", params={"image": ref, "format": fmt}, cookies=cookies,
                      stream=True, timeout=60) as resp:
        if resp.status_code == 200:
            with open(dest, "wb") as out:
                for chunk in resp.iter_content(1 << 16):
                    out.write(chunk)
        else:
            resp.content  # an error's JSON body, read while the connection is open
        return resp


@pytest.mark.skipif(not shutil.which("skopeo"), reason="needs skopeo (apt-get install skopeo)")
def test_the_owner_downloads_an_image_as_oci_and_docker_archives_that_skopeo_reads(
        worker, web, smoke_lab, make_user, client, base_image, tmp_path):
    client.force_login(make_user("owner"))
    made = _commit(client, web, "downloadable")
    image = store().resolve(made["image"])
    for fmt, transport in (("docker", "docker-archive"), ("oci", "oci-archive")):
        dest = tmp_path / f"{fmt}.tar"
        resp = _download(web, client, made["image"], fmt, dest)
        assert resp.status_code == 200, resp.text
        assert "attachment" in resp.headers["Content-Disposition"]
        assert resp.headers.get("Transfer-Encoding") == "chunked"  # streamed, not one built body
        out = subprocess.run(["skopeo", "inspect", f"{transport}:{dest}"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["Layers"] == [layer.digest for layer in image.layers]
        assert len(image.layers) == len(base_image.layers) + 1
    # The container layer, with its whiteout, is in the download.
    with tarfile.open(tmp_path / "docker.tar") as tar:
        top = tar.extractfile(f"{image.diff_ids[-1].split(':')[1]}/layer.tar").read()
    with tarfile.open(fileobj=io.BytesIO(top)) as layer:
        assert {"etc/new", "etc/.wh.motd"} <= set(layer.getnames())


def test_only_the_owner_may_download_an_image(worker, web, smoke_lab, make_user, client, base_image, tmp_path):
    client.force_login(make_user("owner"))
    made = _commit(client, web, "private")
    other = Client()
    other.force_login(make_user("other"))
    assert _download(web, other, made["image"], "docker", tmp_path / "x.tar").status_code == 404
    assert _download(web, other, "lab/base:latest", "docker", tmp_path / "x.tar").status_code == 404
    assert _download(web, None, made["image"], "docker", tmp_path / "x.tar").status_code == 401
    assert _download(web, client, made["image"], "zip", tmp_path / "x.tar").status_code == 400
    assert not (tmp_path / "x.tar").exists()
    # One download per user at a time (each holds a worker slot of the image's host).
    from labs.inside.transfer import _download_lock
    from labs.models import CommittedImage
    from labs.redis import sync_redis

    owner = CommittedImage.objects.get(ref=made["image"]).user_id
    sync_redis().set(_download_lock(owner), "running", ex=60)
    assert _download(web, client, made["image"], "docker", tmp_path / "x.tar").status_code == 409
    sync_redis().delete(_download_lock(owner))
    assert _download(web, client, made["image"], "docker", tmp_path / "x.tar").status_code == 200
    assert not sync_redis().exists(_download_lock(owner))  # released at the end
    # The image's host offline: told at once, not after a timeout.
    CommittedImage.objects.filter(ref=made["image"]).update(host="gone-host")
    resp = _download(web, client, made["image"], "docker", tmp_path / "y.tar")
    assert resp.status_code == 503 and "不在线" in resp.json()["error"]  # in the page's language (zh-hans here)


def test_a_tampered_blob_is_refused_and_nothing_is_tagged(worker, base_image, tmp_path):
    from sandbox.images.exceptions import OCIError
    from sandbox.images.store import ImageStore
    from sandbox.images.stream import receive_image, write_archive

    archive = io.BytesIO()
    write_archive(base_image, store(), archive, fmt="oci")
    data = bytearray(archive.getvalue())
    # Flip a byte inside the last layer blob's content (its member is the archive's last).
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as tar:
        last = [m for m in tar if m.name.startswith("blobs/")][-1]
    data[last.offset_data + 10] ^= 0xFF
    other = ImageStore(tmp_path / "images", uid_base=settings.LAB_SANDBOX_UID)
    with pytest.raises(OCIError, match="hashing to"):
        receive_image(other, io.BytesIO(bytes(data)), ref="lab/copy:latest", manifest_digest=base_image.manifest_digest)
    assert "lab/copy:latest" not in other.refs()
    receive_image(other, io.BytesIO(archive.getvalue()), ref="lab/copy:latest", manifest_digest=base_image.manifest_digest)
    assert other.resolve("lab/copy:latest").diff_ids == base_image.diff_ids


def test_an_image_starts_on_a_host_whose_store_lacks_it(worker, web, smoke_lab, make_user, client, base_image):
    from sandbox.images.store import ImageStore

    client.force_login(make_user("owner"))
    made = _commit(client, web, "travels")
    # A second host with a store of its own (another machine) and more free places, so
    # the usual placement picks it.
    far_dir = Path(settings.LAB_DATA_DIR) / "far"
    far_dir.mkdir(mode=0o711)
    far_store = ImageStore(far_dir / "images", uid_base=settings.LAB_SANDBOX_UID)
    far = start_worker(f"{worker.host}far", env=dict(_subprocess_env(), LAB_HOST_CAPACITY="2000"), data_dir=far_dir)
    try:
        assert made["image"] not in far_store.refs()
        other = Client()
        other.force_login(make_user("other"))
        assert post(other, "/api/sessions/", {"lab": "smoke", "image": made["image"]}).status_code == 404
        resp = post(client, "/api/sessions/", {"lab": "smoke", "image": made["image"]})
        assert resp.status_code == 201, resp.content
        session = resp.json()
        sid = session["id"]
        wait_for(lambda: (s := client.get(f"/api/sessions/{sid}/").json())["state"] == "ready"
                 or (s["state"] in ("failed", "lost") and pytest.fail(s["message"])), timeout=60, what="ready")
        from labs.models import Session

        assert Session.objects.get(id=sid).host == far.host
        fetched = far_store.resolve(made["image"])
        assert fetched.manifest_digest == made["digest"]
        assert fetched.diff_ids == store().resolve(made["image"]).diff_ids
        with ws_connect(web, client, session["ws"]) as ws:
            term = Terminal(ws)
            term.send("test -e /etc/new && test ! -e /etc/motd && echo fe''tched-ok\r")
            term.expect("fetched-ok")  # printed only if the container layer came along
        layers = client.get(f"/api/sessions/{sid}/layers").json()["layers"]
        assert [layer["diff_id"] for layer in layers] == fetched.diff_ids
        assert client.delete(f"/api/sessions/{sid}/").status_code == 204
        wait_for(lambda: client.get(f"/api/sessions/{sid}/").json()["state"] == "stopped", timeout=30, what="stopped")
        # The far host is recorded as a holder: with the image's own host gone, it serves
        # the image (here, to a download).
        from labs.models import CommittedImage

        assert CommittedImage.objects.get(ref=made["image"]).holders == [far.host]
        CommittedImage.objects.filter(ref=made["image"]).update(host="gone-host")
        resp = _download(web, client, made["image"], "oci", Path(settings.LAB_DATA_DIR) / "from-far.tar")
        assert resp.status_code == 200, resp.text
        with tarfile.open(Path(settings.LAB_DATA_DIR) / "from-far.tar") as tar:
            assert f"blobs/sha256/{made['digest'].split(':')[1]}" in tar.getnames()
        CommittedImage.objects.filter(ref=made["image"]).update(host=worker.host)
        # The far store's tag goes stale (as after a new commit of the same name): the
        # next start there notices the digest differs and fetches again.
        from sandbox.images.stream import receive_image, write_archive

        older = io.BytesIO()
        write_archive(base_image, store(), older, fmt="oci")
        older.seek(0)
        receive_image(far_store, older, ref=made["image"], manifest_digest=base_image.manifest_digest)
        assert far_store.refs()[made["image"]]["digest"] != made["digest"]
        resp = post(client, "/api/sessions/", {"lab": "smoke", "image": made["image"]})
        sid = resp.json()["id"]
        wait_for(lambda: (s := client.get(f"/api/sessions/{sid}/").json())["state"] == "ready"
                 or (s["state"] in ("failed", "lost") and pytest.fail(s["message"])), timeout=60, what="ready again")
        assert far_store.refs()[made["image"]]["digest"] == made["digest"]
        assert client.delete(f"/api/sessions/{sid}/").status_code == 204
        wait_for(lambda: client.get(f"/api/sessions/{sid}/").json()["state"] == "stopped", timeout=30, what="stopped")
    finally:
        far.stop()


def test_my_images_speaks_the_trainees_language(smoke_lab, make_user, client):
    client.force_login(make_user())
    client.cookies["django_language"] = "en"
    page = client.get("/labs/smoke/").content.decode()
    assert 'data-testid="my-images"' in page and "Start on this image" in page and "Download (docker save)" in page
    client.cookies["django_language"] = "zh-hans"
    page = client.get("/labs/smoke/").content.decode()
    assert "我的镜像" in page and "用这个镜像启动" in page and "下载（docker save 格式）" in page
