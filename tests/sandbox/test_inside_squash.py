"""Squashing checkpoint layers, with the kernel as the judge: an overlay of the squashed
layer over the kept ones must show exactly what the overlay of every layer shows —
whiteouts, opaque directories, a file replacing a directory and back again."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from sandbox.images.changeset import create_layer
from sandbox.images.layers import LayerPolicy, apply_layer
from sandbox.inside.squash import squash_into
from tests.conftest import IS_ROOT

pytestmark = [pytest.mark.root, pytest.mark.skipif(not IS_ROOT, reason="overlay mounts and 0/0 whiteouts need root")]
UID = 100000


def put(root: Path, rel: str, text: str | None = None) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if text is None:
        path.mkdir(exist_ok=True)
    else:
        path.write_text(text)


def whiteout(root: Path, rel: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))


def opaque(root: Path, rel: str) -> None:
    put(root, rel)
    os.setxattr(root / rel, "trusted.overlay.opaque", b"y")


def tree(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath) / name
            st = os.lstat(path)
            rel = str(path.relative_to(root))
            data = path.read_text() if stat.S_ISREG(st.st_mode) else os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), data)
    return out


def overlay_view(lowers: list[Path], target: Path) -> dict[str, tuple]:
    """What a read-only overlay of these lowerdirs (top first) shows."""
    target.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", "lowerdir=" + ":".join(map(str, lowers)), str(target)],
                   check=True, capture_output=True)
    try:
        return tree(target)
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_a_squashed_layer_over_the_kept_ones_shows_what_all_the_layers_show(tmp_path: Path):
    base, cp1, cp2, upper = (tmp_path / n for n in ("base", "cp1", "cp2", "upper"))
    for layer in (base, cp1, cp2, upper):
        layer.mkdir()
    put(base, "a/file1", "one"); put(base, "a/file2", "two"); put(base, "b/x", "x")
    put(base, "c", "a file"); put(base, "d/deep/f", "f"); put(base, "e/keep", "keep")
    whiteout(cp1, "a/file1"); opaque(cp1, "b"); put(cp1, "b/y", "y"); put(cp1, "n1", "new")
    os.symlink("a/file2", cp1 / "link")
    put(cp2, "a/file1", "back"); whiteout(cp2, "b"); put(cp2, "c/inner", "dir now"); whiteout(cp2, "e/keep")
    opaque(upper, "b"); put(upper, "b/z", "z"); put(upper, "n1", "changed"); put(upper, "d/deep/g", "g")
    put(upper, "c", "a file again")  # a file over cp2's directory, over base's file
    for path in tmp_path.rglob("*"):
        os.lchown(path, UID, UID)

    staging = tmp_path / "squashed"
    staging.mkdir()
    squash_into(staging, [base, cp1, cp2, upper], first=1, uid=UID)
    want = overlay_view([upper, cp2, cp1, base], tmp_path / "all")
    assert overlay_view([staging, base], tmp_path / "squash") == want
    assert want["a/file1"][2] == "back" and "e/keep" not in want and want["c"][2] == "a file again"
    assert os.getxattr(staging / "b", "trusted.overlay.opaque") == b"y"  # it hides base's b/x
    assert stat.S_ISCHR(os.lstat(staging / "e" / "keep").st_mode)

    # Through the OCI changeset and back, as a rewind would stack it.
    tar = tmp_path / "layer.tar"
    with open(tar, "wb") as out:
        create_layer(staging, out, uid_base=UID)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    with open(tar, "rb") as f:
        apply_layer(f, unpacked, LayerPolicy(uid_base=UID))
    assert overlay_view([unpacked, base], tmp_path / "oci") == want
