"""Create a reproducible OCI layer tar from a directory (e.g. an overlay upperdir).

Reproducible: entries sorted by name, every mtime the same constant, no user or
group names, owners shifted back out of the sandbox's range (host 100000 -> 0).
overlayfs whiteouts become OCI whiteouts: a char device 0/0 -> `.wh.<name>`,
an opaque directory -> `<dir>/.wh..wh..opq`.
"""
from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO

from sandbox.images.exceptions import LayerError

OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
# An upperdir written with redirect_dir or metacopy cannot be expressed as an OCI changeset.
UNSUPPORTED_XATTRS = ("overlay.redirect", "overlay.metacopy")
KEEP_XATTR_PREFIXES = ("user.",)
KEEP_XATTRS = ("security.capability",)
LAYER_MTIME = 0


def _xattrs(path: str) -> dict[str, bytes]:
    """All xattrs of `path` (not following a symlink); empty where unsupported."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in names}


class _Writer:
    """Walks a directory in sorted order and writes each entry once."""

    def __init__(self, tar: tarfile.TarFile, uid_base: int, id_count: int, mtime: int,
                 devices: str) -> None:
        self.tar = tar
        self.uid_base = uid_base
        self.id_count = id_count
        self.mtime = mtime
        self.devices = devices
        self.inodes: dict[tuple[int, int], str] = {}

    def owner(self, value: int, rel: str) -> int:
        """Shift a host uid/gid back to the id inside the sandbox."""
        inner = value - self.uid_base
        if not 0 <= inner < self.id_count:
            raise LayerError(
                f"{rel!r}: owned by host id {value}, outside the sandbox range"
                f" {self.uid_base}..{self.uid_base + self.id_count - 1}."
            )
        return inner

    def info(self, rel: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
        """A TarInfo with the fixed, reproducible fields filled in."""
        ti = tarfile.TarInfo(rel)
        ti.type = kind
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid = self.owner(st.st_uid, rel)
        ti.gid = self.owner(st.st_gid, rel)
        ti.uname = ti.gname = ""
        ti.mtime = self.mtime
        return ti

    def empty(self, rel: str) -> None:
        """An empty root-owned marker file (an OCI whiteout)."""
        ti = tarfile.TarInfo(rel)
        ti.mode = 0o644
        ti.mtime = self.mtime
        ti.uname = ti.gname = ""
        self.tar.addfile(ti, io.BytesIO(b""))

    def walk(self, path: str, rel: str) -> None:
        """Write the children of directory `path` (tar name prefix `rel`)."""
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            self.entry(entry.path, f"{rel}{entry.name}", entry.name)

    def entry(self, path: str, rel: str, name: str) -> None:
        """Write one directory entry, and a directory's contents after it."""
        st = os.lstat(path)
        mode = st.st_mode
        xattrs = _xattrs(path)
        for attr in xattrs:
            if attr.endswith(UNSUPPORTED_XATTRS):
                raise LayerError(f"{rel!r}: has {attr}; mount the overlay without redirect_dir/metacopy.")
        if stat.S_ISCHR(mode) and st.st_rdev == os.makedev(0, 0):
            parent = rel[: -len(name)]
            self.empty(f"{parent}.wh.{name}")
            return
        if stat.S_ISDIR(mode):
            ti = self.info(rel + "/", st, tarfile.DIRTYPE)
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.inodes:
                ti = self.info(rel, st, tarfile.LNKTYPE)
                ti.linkname = self.inodes[key]
            else:
                self.inodes[key] = rel
                ti = self.info(rel, st, tarfile.REGTYPE)
                ti.size = st.st_size
        elif stat.S_ISLNK(mode):
            ti = self.info(rel, st, tarfile.SYMTYPE)
            ti.linkname = os.readlink(path)
        elif stat.S_ISFIFO(mode):
            ti = self.info(rel, st, tarfile.FIFOTYPE)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            if self.devices == "refuse":
                raise LayerError(f"{rel!r}: device node in a layer; devices are refused.")
            if self.devices == "skip":
                return
            ti = self.info(rel, st, tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        else:
            return  # sockets do not belong in an image
        for attr in sorted(xattrs):
            if (attr.startswith(KEEP_XATTR_PREFIXES) and ".overlay." not in attr) or attr in KEEP_XATTRS:
                ti.pax_headers[f"SCHILY.xattr.{attr}"] = xattrs[attr].decode("utf-8", "surrogateescape")
        if ti.type == tarfile.REGTYPE:
            with open(path, "rb") as f:
                self.tar.addfile(ti, f)
        else:
            self.tar.addfile(ti)
        if stat.S_ISDIR(mode):
            if any(xattrs.get(a) == b"y" for a in OPAQUE_XATTRS):
                self.empty(f"{rel}/.wh..wh..opq")
            self.walk(path, rel + "/")


def create_layer(src: Path, out: BinaryIO, *, uid_base: int, id_count: int = 65536,
                 mtime: int = LAYER_MTIME, devices: str = "refuse") -> None:
    """Write directory `src` as an uncompressed, reproducible OCI layer tar to `out`."""
    if not src.is_dir():
        raise LayerError(f"{src}: not a directory, cannot make a layer of it.")
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,
                          encoding="utf-8") as tar:
            _Writer(tar, uid_base, id_count, mtime, devices).walk(str(src), "")
    except OSError as exc:
        raise LayerError(f"could not read {src} as a layer: {exc}") from exc
