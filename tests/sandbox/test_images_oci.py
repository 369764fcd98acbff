"""OCI layouts and docker-save archives, checked against real umoci and skopeo."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from sandbox.images.exceptions import OCIError
from sandbox.images.oci import export_image, import_image
from sandbox.images.recipes import build
from sandbox.images.store import ImageStore

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (umoci unpack, chown)"),
    pytest.mark.skipif(not shutil.which("umoci") or not shutil.which("skopeo"),
                       reason="needs umoci and skopeo (apt-get install umoci skopeo)"),
]


def run(*argv: str | Path, cwd: Path | None = None) -> str:
    """Run a tool, failing the test with its stderr."""
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        pytest.fail(f"{argv} failed: {proc.stderr}")
    return proc.stdout


def tree(root: Path) -> dict[str, tuple]:
    """Every entry under root: type, mode, and content or link target (owners aside)."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = path.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", oct(stat.S_IMODE(st.st_mode)))
        else:
            out[rel] = ("file", oct(stat.S_IMODE(st.st_mode)), path.read_bytes())
    return out


def umoci_config(layout: Path, tag: str) -> dict:
    """The image config umoci wrote for layout:tag."""
    index = json.loads((layout / "index.json").read_text())
    desc = next(d for d in index["manifests"] if d["annotations"]["org.opencontainers.image.ref.name"] == tag)
    manifest = json.loads((layout / "blobs/sha256" / desc["digest"].split(":")[1]).read_text())
    return json.loads((layout / "blobs/sha256" / manifest["config"]["digest"].split(":")[1]).read_text())


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    """An empty store under tmp_path."""
    return ImageStore(tmp_path / "images", uid_base=100000)


@pytest.fixture
def umoci_image(tmp_path: Path) -> Path:
    """A two-layer image made by umoci: files, then a deletion (a whiteout)."""
    layout, bundle = tmp_path / "umoci", tmp_path / "bundle"
    run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:t")
    run("umoci", "unpack", "--image", f"{layout}:t", bundle)
    (bundle / "rootfs/etc").mkdir()
    (bundle / "rootfs/etc/keep").write_text("keep\n")
    (bundle / "rootfs/etc/gone").write_text("gone\n")
    (bundle / "rootfs/run.sh").write_text("#!/bin/sh\n")
    os.chmod(bundle / "rootfs/run.sh", 0o4755)
    run("umoci", "repack", "--image", f"{layout}:t", bundle)
    shutil.rmtree(bundle)
    run("umoci", "unpack", "--image", f"{layout}:t", bundle)
    (bundle / "rootfs/etc/gone").unlink()
    run("umoci", "repack", "--image", f"{layout}:t", bundle)
    return layout


def test_umoci_image_imports_with_same_diff_ids_and_files(umoci_image: Path, store: ImageStore) -> None:
    image = import_image(Path(f"{umoci_image}:t"), store, tag="t/umoci:1")
    assert image.diff_ids == umoci_config(umoci_image, "t")["rootfs"]["diff_ids"]
    bottom, top = image.layer_dirs
    assert (bottom / "etc/keep").read_text() == "keep\n"
    assert (bottom / "etc/keep").stat().st_uid == 100000
    assert stat.S_IMODE((bottom / "run.sh").stat().st_mode) == 0o4755
    gone = (top / "etc/gone").lstat()
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0


def test_docker_archive_from_skopeo_imports_with_same_diff_ids(tmp_path: Path, umoci_image: Path,
                                                              store: ImageStore) -> None:
    archive = tmp_path / "saved.tar"
    run("skopeo", "copy", f"oci:{umoci_image}:t", f"docker-archive:{archive}:t/saved:2")
    image = import_image(archive, store)
    assert image.ref == "t/saved:2"
    assert image.diff_ids == umoci_config(umoci_image, "t")["rootfs"]["diff_ids"]


def test_exported_layout_is_read_by_skopeo_and_unpacked_by_umoci_identically(tmp_path: Path,
                                                                              store: ImageStore) -> None:
    image = build(REPO / "images/base.yaml", store)
    out = tmp_path / "out"
    export_image(image, store, out, fmt="oci")
    info = json.loads(run("skopeo", "inspect", f"oci:{out}:latest"))
    assert info["Layers"] == [layer.digest for layer in image.layers]
    assert info["Digest"] == image.manifest_digest
    run("umoci", "unpack", "--image", f"{out}:latest", tmp_path / "bundle")
    ours: dict[str, tuple] = {}
    for layer_dir in image.layer_dirs:  # the base image has no whiteouts: a plain union
        ours.update(tree(layer_dir))
    assert tree(tmp_path / "bundle/rootfs") == ours
    copied = tmp_path / "copied.tar"
    run("skopeo", "copy", f"oci:{out}:latest", f"docker-archive:{copied}:lab/copied:1")
    assert import_image(copied, store).diff_ids == image.diff_ids


def test_docker_export_round_trips_through_skopeo_with_same_image_id(tmp_path: Path,
                                                                      store: ImageStore) -> None:
    image = build(REPO / "images/base.yaml", store)
    archive = tmp_path / "base.tar"
    export_image(image, store, archive, fmt="docker")
    info = json.loads(run("skopeo", "inspect", f"docker-archive:{archive}"))
    assert len(info["Layers"]) == 2
    run("skopeo", "copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'lay'}:x")
    other = ImageStore(tmp_path / "other", uid_base=100000)
    again = import_image(archive, other)
    assert again.id == image.id and again.diff_ids == image.diff_ids
    assert import_image(Path(f"{tmp_path / 'lay'}:x"), other, tag="t/x").diff_ids == image.diff_ids


def test_layout_with_tampered_blob_is_refused(tmp_path: Path, umoci_image: Path, store: ImageStore) -> None:
    config = umoci_config(umoci_image, "t")
    index = json.loads((umoci_image / "index.json").read_text())
    manifest_path = umoci_image / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads(manifest_path.read_text())
    blob = umoci_image / "blobs/sha256" / manifest["layers"][0]["digest"].split(":")[1]
    blob.write_bytes(blob.read_bytes()[:-40] + b"\0" * 40)
    with pytest.raises(OCIError):
        import_image(Path(f"{umoci_image}:t"), store, tag="t/bad")
    assert config and store.list() == []


def test_importing_something_that_is_not_an_image_says_so(tmp_path: Path, store: ImageStore) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(OCIError, match="not an OCI image layout"):
        import_image(tmp_path / "empty", store)
    (tmp_path / "junk.tar").write_bytes(b"junk" * 200)
    with pytest.raises(OCIError, match="cannot read it"):
        import_image(tmp_path / "junk.tar", store)


def test_recipe_can_start_from_an_oci_layout(tmp_path: Path, umoci_image: Path, store: ImageStore) -> None:
    shutil.copytree(umoci_image, tmp_path / "ctx/base")
    (tmp_path / "ctx/extra").write_text("e")
    recipe = tmp_path / "ctx/r.yaml"
    recipe.write_text("tag: t/fromdir\nfrom: base\nsteps:\n  - copy: {src: extra, dest: /extra}\n")
    image = build(recipe, store)
    assert image.diff_ids[:2] == umoci_config(umoci_image, "t")["rootfs"]["diff_ids"]
    assert len(image.diff_ids) == 3
