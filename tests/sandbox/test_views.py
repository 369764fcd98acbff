"""What a trainee can see from inside: the image's own inspect JSON, each layer's
directory, and their own writable layer — read-only — and deep images that start."""
from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import IS_ROOT

pytestmark = [pytest.mark.root, pytest.mark.sandbox, pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
              pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sandbox(worker):
    from labs.hostconfig import host_config
    from sandbox.runtime import Limits
    from sandbox.service import SandboxRequest, sandbox_exec, sandbox_start, sandbox_stop

    cfg = host_config()
    started = []

    def start(image: str = "lab/base:latest"):
        sid = secrets.token_hex(8)
        sandbox_start(cfg, SandboxRequest(sid=sid, image=image, hostname="views", limits=Limits()))
        started.append(sid)
        return lambda script, timeout=10: sandbox_exec(cfg, sid, script, timeout=timeout)

    yield start
    for sid in started:
        sandbox_stop(cfg, sid)


def test_image_json_inside_is_the_stores_inspect_output(sandbox, base_image):
    run = sandbox()
    inside = json.loads(run("cat /var/lib/lab/image.json").output)
    assert inside["RootFS"] == {"Type": "layers", "Layers": base_image.diff_ids}
    assert inside["Id"] == base_image.id and "lab/base:latest" in inside["RepoTags"]
    assert [h["created_by"] for h in inside["History"]] == [h["created_by"] for h in base_image.inspect()["History"]]


def test_each_layer_directory_is_visible_and_matches_the_layer(sandbox, base_image):
    run = sandbox()
    for diff_id, layer_dir in zip(base_image.diff_ids, base_image.layer_dirs):
        hexid = diff_id.split(":")[1]
        inside = set(run(f"cd /var/lib/lab/overlay2/{hexid}/diff && find . | sort").output.split())
        outside = {"." + ("/" + str(p.relative_to(layer_dir)) if p != layer_dir else "")
                   for p in [layer_dir, *layer_dir.rglob("*")]}
        assert inside == outside


def test_rm_of_an_image_file_leaves_a_whiteout_in_the_visible_upper_layer(sandbox):
    run = sandbox()
    assert run("test -f /etc/motd && rm /etc/motd && test ! -e /etc/motd").exit_code == 0
    # overlayfs whiteout: a character device 0/0 in the upperdir
    assert run("stat -c '%F %t:%T' /var/lib/lab/container/upper/etc/motd").output.strip() == "character special file 0:0"
    # the layer itself is untouched, as seen both from inside and from the host
    assert run("ls /var/lib/lab/overlay2/*/diff/etc/motd").exit_code == 0


def test_the_views_are_read_only_even_for_root_inside(sandbox):
    run = sandbox()
    assert run("touch /var/lib/lab/overlay2/x 2>&1").exit_code != 0
    assert run("for d in /var/lib/lab/overlay2/*/diff; do touch $d/etc/pwn && exit 0; done; exit 1").exit_code == 1
    assert run("mount -o remount,rw,bind /var/lib/lab 2>&1").exit_code != 0
    assert run("for d in /var/lib/lab/overlay2/*/diff; do mount -o remount,rw,bind $d 2>/dev/null && exit 0; done; exit 1").exit_code == 1
    assert run("mount -o remount,rw,bind /var/lib/lab/container/upper 2>&1").exit_code != 0


def test_an_image_of_128_layers_starts_and_shows_its_top_layer(sandbox, base_image, tmp_path):
    from sandbox.images.recipes import build
    from sandbox.images.store import ImageStore

    files = tmp_path / "files"
    files.mkdir()
    steps = []
    for i in range(126):
        (files / f"layer{i}").write_text(str(i))
        steps.append(f"  - copy: {{src: files/layer{i}, dest: /layers/layer{i}}}")
    steps.append("  - copy: {src: files/layer125, dest: /layers/top}")
    (tmp_path / "deep.yaml").write_text("tag: test/deep:latest\nfrom: lab/base:latest\nsteps:\n" + "\n".join(steps) + "\n")
    image = build(tmp_path / "deep.yaml", ImageStore(Path(settings.LAB_DATA_DIR) / "images", uid_base=settings.LAB_SANDBOX_UID))
    assert len(image.diff_ids) == 129
    run = sandbox("test/deep:latest")
    assert run("cat /layers/top; echo; ls /layers | wc -l").output.split() == ["125", "127"]
    assert run("grep -c . /proc/self/mountinfo >/dev/null && ls /var/lib/lab/overlay2 | wc -l").output.strip() == "129"
