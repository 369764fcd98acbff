"""The image store and recipes: chain ids, the default image, caching, gc, 128 layers."""
from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from sandbox.images import spec
from sandbox.images.exceptions import ImageNotFound, LayerError, RecipeError
from sandbox.images.gc import collect
from sandbox.images.recipes import build
from sandbox.images.store import ImageStore

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown into the uid range)")
REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "images" / "base.yaml"


def layer_tar(tmp: Path, files: dict[str, bytes], name: str = "layer.tar") -> Path:
    """Write a plain layer tar with the given regular files."""
    path = tmp / name
    with tarfile.open(path, "w") as tar:
        for fname, data in files.items():
            ti = tarfile.TarInfo(fname)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    return path


def config_for(layers: list) -> dict:
    """A minimal image config for the given layers."""
    return {"architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [{"created_by": "test"} for _ in layers]}


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    """An empty store under tmp_path."""
    return ImageStore(tmp_path / "images", uid_base=100000)


def test_chain_ids_follow_the_oci_spec() -> None:
    a, b, c = ("sha256:" + hashlib.sha256(x).hexdigest() for x in (b"a", b"b", b"c"))
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert spec.chain_ids([a, b, c]) == [a, ab, abc]


def test_default_image_builds_fast_with_two_layers_and_shifted_owners(store: ImageStore) -> None:
    image = build(BASE, store)
    assert image.ref == "lab/base:latest" and len(image.diff_ids) == 2
    assert image.id.startswith("sha256:") and image.chain_ids[0] == image.diff_ids[0]
    bottom, top = image.layer_dirs
    assert (bottom / "bin/busybox").stat().st_uid == 100000
    assert os.readlink(bottom / "bin/sh") == "/bin/busybox"
    assert oct((bottom / "tmp").stat().st_mode & 0o7777) == "0o1777"
    assert "root:x:0:0" in (bottom / "etc/passwd").read_text()
    assert "Container Image Lab" in (top / "etc/os-release").read_text()
    assert "欢迎" in (top / "etc/motd").read_text() and "Welcome" in (top / "etc/motd").read_text()
    assert r"\u@\h:\w\$ " in (top / "etc/profile").read_text()
    info = image.inspect()
    assert info["RootFS"] == {"Type": "layers", "Layers": image.diff_ids}
    assert info["Config"]["Cmd"] == ["/bin/sh", "-l"]
    # bash for typed Chinese and emoji (issue 15): itself, what ldd names, the locale.
    for path in ("bin/bash", "lib64/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/libc.so.6",
                 "usr/lib/locale/C.utf8/LC_CTYPE", "lib/terminfo/x/xterm-256color"):
        assert (bottom / path).is_file() and not (bottom / path).is_symlink(), path
    assert (bottom / "bin/bash").stat().st_mode & 0o111
    assert "/bin/bash" in (top / "etc/shells").read_text()
    assert [h.get("empty_layer", False) for h in info["History"]][:2] == [False, False]
    assert store.resolve("lab/base").id == image.id


def test_rebuilding_an_unchanged_recipe_reuses_layers(store: ImageStore) -> None:
    first = build(BASE, store)
    messages: list[str] = []
    second = build(BASE, store, progress=messages.append)
    assert second.diff_ids == first.diff_ids and second.id == first.id
    assert sum("cached" in m for m in messages) == 2


def test_changed_copy_source_makes_a_new_top_layer_only(tmp_path: Path, store: ImageStore) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files/hello").write_text("1")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("tag: t/copy\nfrom: scratch\nsteps:\n  - busybox: {}\n"
                      "  - copy: {src: files/hello, dest: /etc/hello}\n")
    first = build(recipe, store)
    (tmp_path / "files/hello").write_text("2")
    second = build(recipe, store)
    assert second.diff_ids[0] == first.diff_ids[0] and second.diff_ids[1] != first.diff_ids[1]
    assert (second.layer_dirs[1] / "etc/hello").read_text() == "2"


def test_recipe_from_another_image_stacks_on_its_layers(tmp_path: Path, store: ImageStore) -> None:
    base = build(BASE, store)
    (tmp_path / "x").write_text("x")
    recipe = tmp_path / "child.yaml"
    recipe.write_text("tag: t/child\nfrom: lab/base:latest\nsteps:\n  - copy: {src: x, dest: /x}\n"
                      "  - env: {A: b}\n")
    child = build(recipe, store)
    assert child.diff_ids[:2] == base.diff_ids and len(child.diff_ids) == 3
    assert "A=b" in child.config["config"]["Env"] and "HOME=/root" in child.config["config"]["Env"]
    assert child.lower_links[1:] == base.lower_links


def test_broken_recipe_names_file_line_and_step(tmp_path: Path, store: ImageStore) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("tag: t/bad\nsteps:\n  - busybox: {}\n  - copy: {src: missing, dest: /m}\n")
    with pytest.raises(RecipeError, match=r"bad\.yaml:4: step 2.*missing.*does not exist"):
        build(recipe, store)


def test_unknown_step_and_missing_base_are_clear_errors(tmp_path: Path, store: ImageStore) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("tag: t/x\nsteps:\n  - frobnicate: 1\n")
    with pytest.raises(RecipeError, match=r"r\.yaml:3: step 1: unknown step 'frobnicate'"):
        build(recipe, store)
    recipe.write_text("tag: t/x\nfrom: nope/none:1\nsteps: []\n")
    with pytest.raises(RecipeError, match="nope/none:1.*not in the image store"):
        build(recipe, store)


def test_resolving_a_missing_image_says_how_to_get_it(store: ImageStore) -> None:
    with pytest.raises(ImageNotFound, match="manage.py image build"):
        store.resolve("lab/none:latest")
    assert store.list() == []


def test_failed_unpack_leaves_no_layer_dir_behind(tmp_path: Path, store: ImageStore) -> None:
    store.ensure()
    bad = tmp_path / "bad.tar"
    data = layer_tar(tmp_path, {"ok": b"1", "../evil": b"2"}).read_bytes()
    bad.write_bytes(data)
    with pytest.raises(LayerError):
        store.add_layer(bad, None)
    assert [p.name for p in store.layers_dir.iterdir()] == ["l"]


def test_gc_keeps_tagged_and_in_use_layers_and_removes_the_rest(tmp_path: Path, store: ImageStore) -> None:
    image = build(BASE, store)
    store.ensure()
    orphan = store.add_layer(layer_tar(tmp_path, {"o": b"o"}), None)
    used = store.add_layer(layer_tar(tmp_path, {"u": b"u"}, "u.tar"), None)
    session = tmp_path / "sessions" / "s1"
    session.mkdir(parents=True)
    (session / "layers.json").write_text(json.dumps([used.chain_id]))
    report = collect(store)
    assert report.layers == 1 and report.kept_in_use == [used.chain_id]
    assert not store.layer_dir(orphan.chain_id).exists() and store.layer_dir(used.chain_id).exists()
    assert all(d.exists() for d in image.layer_dirs)
    store.remove("lab/base:latest")
    collect(store, in_use=set())
    assert not any(d.exists() for d in image.layer_dirs)
    assert list(store.blobs.iterdir()) == [] and list((store.layers_dir / "l").iterdir()) == []


def test_128_layers_mount_with_short_lower_links(tmp_path: Path, store: ImageStore) -> None:
    store.ensure()
    layers, parent = [], None
    for i in range(128):
        layer = store.add_layer(layer_tar(tmp_path, {f"f{i}": b"x", "top": str(i).encode()}), parent)
        layers.append(layer)
        parent = layer.chain_id
    image = store.commit("t/deep:latest", config_for(layers), layers)
    option = "lowerdir=" + ":".join(image.lower_links)
    assert len(image.lower_links) == 128 and len(option) < 4096
    assert image.lower_links[0].endswith(spec.hexof(image.chain_ids[-1])[:12])
    merged = tmp_path / "merged"
    merged.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", option, str(merged)],
                   cwd=store.layers_dir, check=True)
    try:
        assert (merged / "top").read_text() == "127"
        assert (merged / "f0").exists() and (merged / "f127").exists()
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def test_run_step_becomes_one_layer_with_its_files_and_whiteouts(tmp_path: Path, store: ImageStore) -> None:
    recipe = tmp_path / "run.yaml"
    recipe.write_text("tag: t/run\nsteps:\n  - busybox: {}\n"
                      "  - run: echo hi > /etc/hi && rm /etc/passwd && mkdir -p /opt/app && id -u > /opt/app/uid\n")
    image = build(recipe, store)
    assert len(image.diff_ids) == 2
    top = image.layer_dirs[-1]
    assert (top / "etc" / "hi").read_text() == "hi\n"
    assert (top / "opt" / "app" / "uid").read_text() == "0\n"  # root inside the build sandbox
    whiteout = os.lstat(top / "etc" / "passwd")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0  # overlayfs whiteout in the unpacked layer
    assert not (top / "proc").exists()  # runc's mountpoints are not part of the layer
    assert image.inspect()["History"][-1]["created_by"].startswith("run: /bin/sh -c echo hi")
    again = build(recipe, store)
    assert again.diff_ids == image.diff_ids


def test_a_failing_run_step_names_the_step_and_shows_its_output(tmp_path: Path, store: ImageStore) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("tag: t/bad\nsteps:\n  - busybox: {}\n  - run: echo about-to-fail; exit 3\n")
    with pytest.raises(RecipeError, match=r"(?s)bad\.yaml:4.*exited with status 3.*about-to-fail"):
        build(recipe, store)
