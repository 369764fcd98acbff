"""Applying and creating layers: whiteouts, metadata, hostile tars, reproducibility."""
from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from sandbox.images.changeset import create_layer
from sandbox.images.exceptions import LayerError
from sandbox.images.layers import LayerPolicy, apply_layer

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod, overlay)")
pytestmark = needs_root
POLICY = LayerPolicy(uid_base=100000, id_count=65536)


def make_tar(*entries: tuple) -> io.BytesIO:
    """A tar from (name, type, extra) entries; extra: data/linkname/mode/uid/pax/size."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, extra in entries:
            ti = tarfile.TarInfo(name)
            ti.type = kind
            ti.mode = extra.get("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
            ti.uid = ti.gid = extra.get("uid", 0)
            ti.mtime = extra.get("mtime", 1_000_000)
            ti.linkname = extra.get("linkname", "")
            ti.pax_headers = extra.get("pax", {})
            ti.devmajor, ti.devminor = extra.get("dev", (0, 0))
            data = extra.get("data", b"")
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    buf.seek(0)
    return buf


def apply(tmp_path: Path, buf: io.BytesIO, name: str = "diff", policy: LayerPolicy = POLICY) -> Path:
    """Apply a tar into a fresh directory under tmp_path."""
    dest = tmp_path / name
    dest.mkdir()
    apply_layer(buf, dest, policy)
    return dest


def overlay_ls(tmp_path: Path, lowers: list[Path], path: str) -> list[str]:
    """Mount lowers (top first) read-only and list `path` in the merged view."""
    merged = tmp_path / "merged"
    merged.mkdir(exist_ok=True)
    opts = "lowerdir=" + ":".join(str(p) for p in lowers)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
    try:
        return sorted(os.listdir(merged / path))
    finally:
        subprocess.run(["umount", str(merged)], check=True)


def test_files_keep_modes_owners_links_xattrs_and_mtimes(tmp_path: Path) -> None:
    buf = make_tar(
        ("usr", tarfile.DIRTYPE, {"mtime": 42}),
        ("usr/bin", tarfile.DIRTYPE, {}),
        ("usr/bin/su", tarfile.REGTYPE, {"data": b"su", "mode": 0o4755}),
        ("usr/bin/su2", tarfile.LNKTYPE, {"linkname": "usr/bin/su"}),
        ("usr/bin/sh", tarfile.SYMTYPE, {"linkname": "/bin/busybox"}),
        ("shared", tarfile.DIRTYPE, {"mode": 0o3777}),
        ("home/u/f", tarfile.REGTYPE, {"data": b"x", "uid": 1000, "pax": {"SCHILY.xattr.user.k": "v"}}),
    )
    root = apply(tmp_path, buf)
    su = (root / "usr/bin/su").lstat()
    assert stat.S_IMODE(su.st_mode) == 0o4755 and su.st_uid == 100000
    assert su.st_nlink == 2 and (root / "usr/bin/su2").lstat().st_ino == su.st_ino
    assert os.readlink(root / "usr/bin/sh") == "/bin/busybox"
    assert stat.S_IMODE((root / "shared").stat().st_mode) == 0o3777
    assert (root / "home/u/f").stat().st_uid == 101000
    assert os.getxattr(root / "home/u/f", "user.k") == b"v"
    assert (root / "usr").stat().st_mtime == 42
    assert (root / "usr/bin/su").stat().st_mtime == 1_000_000


def test_whiteout_becomes_char_device_and_opaque_dir_gets_xattr(tmp_path: Path) -> None:
    buf = make_tar(("etc/.wh.gone", tarfile.REGTYPE, {}), ("var/.wh..wh..opq", tarfile.REGTYPE, {}))
    root = apply(tmp_path, buf)
    st = (root / "etc/gone").lstat()
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(root / "var", "trusted.overlay.opaque") == b"y"
    assert not (root / "etc/.wh.gone").exists()


def test_whiteout_hides_lower_file_after_rm(tmp_path: Path) -> None:
    lower = apply(tmp_path, make_tar(("etc/a", tarfile.REGTYPE, {"data": b"a"}),
                                     ("etc/b", tarfile.REGTYPE, {"data": b"b"}),
                                     ("var/x", tarfile.REGTYPE, {})), "lower")
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "m"
    for d in (upper, work, merged):
        d.mkdir()
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
    try:
        (merged / "etc/a").unlink()
        subprocess.run(["rm", "-rf", str(merged / "var")], check=True)
        (merged / "var").mkdir()
        (merged / "var/new").write_text("n")
        os.chown(merged / "var", 100000, 100000)
        os.chown(merged / "var/new", 100000, 100000)
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    out = io.BytesIO()
    create_layer(upper, out, uid_base=100000)
    out.seek(0)
    names = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
    assert "etc/.wh.a" in names and "var/.wh..wh..opq" in names
    layer2 = apply(tmp_path, out, "layer2")
    assert overlay_ls(tmp_path, [layer2, lower], "etc") == ["b"]
    assert overlay_ls(tmp_path, [layer2, lower], "var") == ["new"]


def test_created_layer_is_reproducible_and_shifts_owners_back(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "b").mkdir(parents=True)
    (src / "b/z").write_text("z")
    (src / "a").write_text("a")
    os.link(src / "a", src / "b/hard")
    for p in (src, src / "b", src / "b/z", src / "a"):
        os.chown(p, 100000, 100000)
    os.chown(src / "b/z", 101000, 101000)
    first, second = io.BytesIO(), io.BytesIO()
    create_layer(src, first, uid_base=100000)
    os.utime(src / "a", (5, 5))  # mtimes do not leak into the tar
    create_layer(src, second, uid_base=100000)
    assert first.getvalue() == second.getvalue()
    members = tarfile.open(fileobj=io.BytesIO(first.getvalue())).getmembers()
    assert [m.name for m in members] == ["a", "b", "b/hard", "b/z"]
    assert members[2].islnk() and members[2].linkname == "a"
    assert members[3].uid == 1000 and all(m.mtime == 0 for m in members)


def test_created_layer_refuses_owner_outside_sandbox_range(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src/f").write_text("x")  # owned by host root, not by the sandbox
    with pytest.raises(LayerError, match="outside the sandbox range"):
        create_layer(tmp_path / "src", io.BytesIO(), uid_base=100000)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([("../evil", tarfile.REGTYPE, {})], r"`\.\.`"),
        ([("a/../../evil", tarfile.REGTYPE, {})], r"`\.\.`"),
        ([("/etc/evil", tarfile.REGTYPE, {})], "absolute path"),
        ([("link", tarfile.SYMTYPE, {"linkname": "../../../../etc"})], "outside the image root"),
        ([("hard", tarfile.LNKTYPE, {"linkname": "/etc/passwd"})], "absolute path"),
        ([("hard", tarfile.LNKTYPE, {"linkname": "../outside"})], r"`\.\.`"),
        ([("hard", tarfile.LNKTYPE, {"linkname": "etc/passwd"})], "not in this layer"),
        ([("dev", tarfile.SYMTYPE, {"linkname": "/tmp"}), ("dev/evil", tarfile.REGTYPE, {})], "is a symlink"),
        ([("null", tarfile.CHRTYPE, {"dev": (1, 3)})], "device node"),
        ([("f", tarfile.REGTYPE, {"uid": 70000})], "outside the 65536 ids"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-escape", "hardlink-absolute",
         "hardlink-dotdot", "hardlink-missing", "symlinked-parent", "device", "uid"],
)
def test_hostile_tar_is_refused_and_writes_nothing_outside(tmp_path: Path, entries: list, message: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "layer" / "diff"
    dest.mkdir(parents=True)
    with pytest.raises(LayerError, match=message):
        apply_layer(make_tar(*entries), dest, LayerPolicy(uid_base=100000))
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()


def test_absurd_declared_size_is_refused_before_reading(tmp_path: Path) -> None:
    buf = make_tar(("big", tarfile.REGTYPE, {"data": b"x" * 10}))
    raw = bytearray(buf.getvalue())
    with pytest.raises(LayerError, match="byte limit"):
        apply_layer(io.BytesIO(bytes(raw)), tmp_path, LayerPolicy(max_bytes=5))


def test_truncated_tar_is_a_layer_error(tmp_path: Path) -> None:
    data = make_tar(("f", tarfile.REGTYPE, {"data": b"y" * 5000})).getvalue()[:1500]
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(data), tmp_path, POLICY)


def test_devices_are_created_only_when_policy_allows(tmp_path: Path) -> None:
    buf = make_tar(("null", tarfile.CHRTYPE, {"dev": (1, 3), "mode": 0o666}))
    root = apply(tmp_path, buf, policy=LayerPolicy(devices="allow"))
    assert (root / "null").lstat().st_rdev == os.makedev(1, 3)
    buf.seek(0)
    skipped = apply(tmp_path, buf, "skipped", policy=LayerPolicy(devices="skip"))
    assert list(skipped.iterdir()) == []


def test_trusted_xattrs_from_an_image_are_not_applied(tmp_path: Path) -> None:
    buf = make_tar(("d", tarfile.DIRTYPE, {"pax": {"SCHILY.xattr.trusted.overlay.opaque": "y"}}))
    root = apply(tmp_path, buf)
    assert "trusted.overlay.opaque" not in os.listxattr(root / "d")
