"""Squash the top of a layer stack into one layer, so that checkpoints taken after
rewinds do not stack without end (overlayfs takes a bounded number of lowerdirs).

The squashed layer is written in upperdir form (0/0 whiteouts, opaque xattrs) into an
empty directory: exactly the changes that layers[first:] make over layers[:first], as
overlayfs itself resolves them (sandbox.inside.tree). `create_layer` then turns it into
an OCI changeset like any upperdir.
"""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Sequence

from sandbox.inside.changes import OPAQUE_XATTRS
from sandbox.inside.tree import merged_dir

NO_LIMIT = 10**9


def _copy_meta(src: str, dest: str, st: os.stat_result) -> None:
    """Owner, mode, times and user xattrs of src onto dest (never following links)."""
    os.lchown(dest, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dest, stat.S_IMODE(st.st_mode))
    for name in os.listxattr(src, follow_symlinks=False):
        if name.startswith("user.") and ".overlay." not in name:
            os.setxattr(dest, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_entry(src: str, dest: str) -> None:
    """One non-directory entry, as it is."""
    st = os.lstat(src)
    if stat.S_ISREG(st.st_mode):
        shutil.copyfile(src, dest, follow_symlinks=False)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dest)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(dest)
    else:
        return  # device nodes do not go into layers (create_layer would skip them)
    _copy_meta(src, dest, st)


def squash_into(staging: Path, layers: Sequence[Path], first: int, *, uid: int) -> None:
    """Write into the empty directory `staging` (upperdir form) what layers[first:]
    (bottom -> top) change over layers[:first]; whiteouts are owned by `uid`."""

    def walk(parts: tuple[str, ...], dest: str) -> None:
        listing = merged_dir(layers, "/" + "/".join(parts), limit=NO_LIMIT)
        for entry in listing["entries"]:
            if entry["layer"] < first:
                continue  # unchanged since the layers that stay
            hides_kept = any(i < first for i in entry["hides"])
            src = os.path.join(str(layers[entry["layer"]]), *parts, entry["name"])
            target = os.path.join(dest, entry["name"])
            if entry["deleted"]:
                if hides_kept:
                    os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))
                    os.lchown(target, uid, uid)
                continue
            if entry["type"] != "dir":
                _copy_entry(src, target)
                continue
            os.mkdir(target)
            if hides_kept:
                # It hides what the kept layers have at that path: opaque, as overlayfs makes it.
                os.setxattr(target, OPAQUE_XATTRS[0], b"y", follow_symlinks=False)
            walk(parts + (entry["name"],), target)
            _copy_meta(src, target, os.lstat(src))  # after its children, which change its mtime

    walk((), str(staging))
