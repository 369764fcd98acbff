"""What a sandbox's container layer holds, read on the host side of its upperdir.

Like `docker diff`, in overlayfs' words: an entry of the upperdir that no lowerdir
has is *added*; one that hides a lower entry is *modified* (a copy-up); a char device
0/0 is a whiteout: *deleted*; a directory with the opaque xattr is *opaque*. A
directory that is only in the upperdir because something below it changed (its
copy-up carries the lower's owner and mode) is not a change of its own.

Nothing here runs inside the sandbox and nothing watches it: the walk is a bounded
`lstat` of the upperdir, made when someone asks.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")
MAX_CHANGES = 5000


def is_whiteout(st: os.stat_result) -> bool:
    """overlayfs' whiteout: a character device with device number 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    """A directory whose lower copies overlayfs ignores."""
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


@dataclass(frozen=True)
class Lower:
    """What the lowerdirs (top first) show at one path."""

    st: os.stat_result | None  # None: no lower layer has it (or a whiteout hides it)
    layer: int = -1  # index, bottom = 0, of the layer it comes from


def lower_lookup(lowers: Sequence[Path], parts: tuple[str, ...]) -> Lower:
    """Resolve a path through the lowerdirs as overlayfs would (top first): a whiteout
    or an opaque parent directory ends the search downwards."""
    count = len(lowers)
    for depth, layer in enumerate(lowers):
        path = str(layer)
        hidden_below = False
        for i, part in enumerate(parts):
            path = os.path.join(path, part)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                break  # this layer does not have it: look in the next one down
            if is_whiteout(st):
                return Lower(None)
            if i == len(parts) - 1:
                return Lower(st, count - 1 - depth)
            if not stat.S_ISDIR(st.st_mode):
                return Lower(None)  # a file here hides the directory of lower layers
            if is_opaque(path):
                hidden_below = True
        if hidden_below:
            return Lower(None)
    return Lower(None)


def _meta_changed(upper: os.stat_result, lower: os.stat_result) -> bool:
    """Owner, mode or type differ between a copied-up directory and its lower copy."""
    return (upper.st_mode, upper.st_uid, upper.st_gid) != (lower.st_mode, lower.st_uid, lower.st_gid)


def upper_changes(upper: Path, lowers: Sequence[Path], *, limit: int = MAX_CHANGES) -> tuple[list[dict], bool]:
    """(changes sorted by path, truncated?) of an upperdir over its lowerdirs (top first).

    Each change: {"path", "kind", "size", "lower_size", "layer"}: `size` is what the
    container layer holds, `lower_size` what a lower layer still holds under it (the
    bytes a modification or a whiteout "wastes"), `layer` the lower layer it hides.
    """
    out: list[dict] = []

    def add(parts: tuple[str, ...], kind: str, size: int, lower: Lower) -> bool:
        lower_size = lower.st.st_size if lower.st is not None and not stat.S_ISDIR(lower.st.st_mode) else 0
        out.append({"path": "/" + "/".join(parts), "kind": kind, "size": size,
                    "lower_size": lower_size, "layer": lower.layer})
        return len(out) < limit

    def walk(path: str, parts: tuple[str, ...], under_new: bool) -> bool:
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            return True  # removed while we looked
        for entry in entries:
            sub = parts + (entry.name,)
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            lower = Lower(None) if under_new else lower_lookup(lowers, sub)
            if is_whiteout(st):
                if lower.st is not None and not add(sub, "deleted", 0, lower):
                    return False
                continue
            if stat.S_ISDIR(st.st_mode):
                opaque = is_opaque(entry.path)
                if opaque:
                    if not add(sub, "opaque", 0, lower):
                        return False
                elif lower.st is None:
                    if not add(sub, "added", 0, lower):
                        return False
                elif _meta_changed(st, lower.st) and not add(sub, "modified", 0, lower):
                    return False
                if not walk(entry.path, sub, under_new or opaque or lower.st is None):
                    return False
                continue
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
            if not add(sub, "added" if lower.st is None else "modified", size, lower):
                return False
        return True

    complete = walk(str(upper), (), False)
    return out, not complete


def upper_bytes(upper: Path) -> int:
    """Bytes the container layer holds (regular files, as allocated on its tmpfs)."""
    total = 0
    for dirpath, _, files in os.walk(upper):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total
