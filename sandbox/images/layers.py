"""Apply an OCI layer tar (a changeset) to a directory as an overlayfs lowerdir.

OCI whiteouts become overlayfs whiteouts: `.wh.<name>` -> a char device 0/0 named
<name>; `.wh..wh..opq` -> xattr `trusted.overlay.opaque=y` on its directory.
Owners are shifted into the sandbox's user namespace: tar uid 0 -> host `uid_base`.

The tar is hostile until proven otherwise. Every entry is written by hand (never
`extractall`): no absolute names, no `..`, never through a symlinked parent,
hard links only to files already in this layer, device nodes only by policy, and
the whole layer stays under a size limit. Anything else is a LayerError.
"""
from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sandbox.images.changeset import create_layer  # noqa: F401  (re-exported)
from sandbox.images.exceptions import LayerError

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE = "trusted.overlay.opaque"
# Only these xattrs may come from an image; trusted.* would let a tar forge
# overlayfs metadata (redirects, opaque, metacopy) of the host's mounts.
XATTR_PREFIXES = ("user.",)
XATTR_NAMES = ("security.capability",)
DEVICE_POLICIES = ("refuse", "skip", "allow")


@dataclass(frozen=True)
class LayerPolicy:
    """How a layer is applied: the id shift, device nodes, limits."""

    uid_base: int = 100000
    id_count: int = 65536
    devices: str = "refuse"  # "refuse" | "skip" | "allow"
    max_bytes: int = 16 << 30
    max_entries: int = 2_000_000


@dataclass
class LayerStats:
    """What applying one layer did."""

    entries: int = 0
    bytes: int = 0
    whiteouts: int = 0
    opaque_dirs: int = 0
    skipped: int = 0


def clean_name(name: str) -> tuple[str, ...]:
    """Split a tar member name into path parts, refusing absolute paths and `..`."""
    if "\x00" in name:
        raise LayerError(f"{name!r}: a NUL byte in an entry name.")
    if name.startswith("/"):
        raise LayerError(f"{name!r}: absolute path in a layer tar; names must be relative.")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise LayerError(f"{name!r}: `..` in a layer tar entry would escape the layer.")
    return parts


def _check_symlink_target(parts: tuple[str, ...], target: str) -> None:
    """Refuse a relative symlink that climbs above the image root."""
    if target.startswith("/"):
        return  # resolved inside the container's root, never on the host
    depth = len(parts) - 1
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise LayerError(
                    f"{'/'.join(parts)!r}: symlink to {target!r} points outside the image root."
                )
        elif part not in ("", "."):
            depth += 1


class _Applier:
    """State of one layer being written into a fresh directory."""

    def __init__(self, root: Path, policy: LayerPolicy) -> None:
        if policy.devices not in DEVICE_POLICIES:
            raise LayerError(f"device policy {policy.devices!r}: use one of {DEVICE_POLICIES}.")
        self.root = str(root)
        self.policy = policy
        self.stats = LayerStats()
        self.dir_times: list[tuple[str, int]] = []

    def host_id(self, value: int, what: str, name: str) -> int:
        """Shift a tar uid/gid into the sandbox's range on the host."""
        if not 0 <= value < self.policy.id_count:
            raise LayerError(
                f"{name!r}: {what} {value} is outside the {self.policy.id_count} ids a sandbox maps."
            )
        return self.policy.uid_base + value

    def parent(self, parts: tuple[str, ...], name: str, create: bool = True) -> str:
        """The host path of an entry's directory; every component must be a real directory."""
        path = self.root
        for part in parts[:-1]:
            path = os.path.join(path, part)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if not create:
                    raise LayerError(f"{name!r} is not in this layer ({part!r} is missing).") from None
                # Implicit parents, as docker and containerd make them: 0755, container root.
                os.mkdir(path, 0o755)
                os.lchown(path, self.policy.uid_base, self.policy.uid_base)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise LayerError(f"{name!r}: parent {part!r} is a symlink; refusing to write through it.")
            if not stat.S_ISDIR(st.st_mode):
                raise LayerError(f"{name!r}: parent {part!r} is not a directory.")
        return path

    def clear(self, path: str, keep_dir: bool) -> bool:
        """Remove what an earlier entry put at `path`; True if a directory is kept."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(path)
        else:
            os.unlink(path)
        return False

    def apply(self, tar: tarfile.TarFile) -> LayerStats:
        """Write every member of `tar`, then fix directory mtimes."""
        for member in tar:
            self.stats.entries += 1
            if self.stats.entries > self.policy.max_entries:
                raise LayerError(f"layer has more than {self.policy.max_entries} entries.")
            self.member(tar, member)
        # Children change their directory's mtime, so directories come last, deepest first.
        for path, mtime in reversed(self.dir_times):
            os.utime(path, (mtime, mtime), follow_symlinks=False)
        return self.stats

    def member(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        """Apply one tar member."""
        parts = clean_name(m.name)
        if not parts:
            return  # "./": the layer root keeps its own attributes
        base = parts[-1]
        if base.startswith(WHITEOUT):
            self.whiteout(parts, m.name)
            return
        if m.size > self.policy.max_bytes or self.stats.bytes + m.size > self.policy.max_bytes:
            raise LayerError(
                f"{m.name!r}: layer is larger than the {self.policy.max_bytes} byte limit."
            )
        uid = self.host_id(m.uid, "uid", m.name)
        gid = self.host_id(m.gid, "gid", m.name)
        path = os.path.join(self.parent(parts, m.name), base)
        kept_dir = self.clear(path, keep_dir=m.isdir())
        if m.isdir():
            if not kept_dir:
                os.mkdir(path, 0o700)
        elif m.isreg():
            self.write_file(tar, m, path)
        elif m.issym():
            _check_symlink_target(parts, m.linkname)
            os.symlink(m.linkname, path)
        elif m.islnk():
            self.hardlink(m, path)
            return  # a hard link shares its target's inode and attributes
        elif m.isfifo():
            os.mkfifo(path, 0o600)
        elif m.ischr() or m.isblk():
            if not self.device(m, path):
                return
        else:
            raise LayerError(f"{m.name!r}: unsupported tar entry type {m.type!r}.")
        os.lchown(path, uid, gid)
        if not m.issym():
            os.chmod(path, m.mode & 0o7777)  # after chown, which clears setuid/setgid
        self.xattrs(m, path)
        mtime = int(m.mtime)
        if m.isdir():
            self.dir_times.append((path, mtime))
        else:
            os.utime(path, (mtime, mtime), follow_symlinks=False)

    def write_file(self, tar: tarfile.TarFile, m: tarfile.TarInfo, path: str) -> None:
        """Copy a regular file's bytes, never following a link at `path`."""
        src = tar.extractfile(m)
        if src is None:
            raise LayerError(f"{m.name!r}: file data is missing.")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        with os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        self.stats.bytes += m.size

    def hardlink(self, m: tarfile.TarInfo, path: str) -> None:
        """Link to a file earlier in this same layer, never to anything outside it."""
        target_parts = clean_name(m.linkname)
        if not target_parts:
            raise LayerError(f"{m.name!r}: hard link to the layer root.")
        target = os.path.join(self.parent(target_parts, m.linkname, create=False), target_parts[-1])
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            raise LayerError(
                f"{m.name!r}: hard link to {m.linkname!r}, which is not in this layer."
            ) from None
        if stat.S_ISDIR(st.st_mode):
            raise LayerError(f"{m.name!r}: hard link to a directory {m.linkname!r}.")
        os.link(target, path, follow_symlinks=False)

    def device(self, m: tarfile.TarInfo, path: str) -> bool:
        """Create a device node if the policy allows it; False if skipped."""
        if self.policy.devices == "refuse":
            raise LayerError(
                f"{m.name!r}: device node {m.devmajor}:{m.devminor} in a layer; devices are refused"
                " (the runtime provides /dev)."
            )
        if self.policy.devices == "skip":
            self.stats.skipped += 1
            return False
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        os.mknod(path, kind | 0o600, os.makedev(m.devmajor, m.devminor))
        return True

    def whiteout(self, parts: tuple[str, ...], name: str) -> None:
        """Turn an OCI whiteout into its overlayfs form."""
        base = parts[-1]
        directory = self.parent(parts, name)
        if base == OPAQUE:
            # Opaque: this layer's directory hides every lower entry of the same path.
            os.setxattr(directory, OVERLAY_OPAQUE, b"y", follow_symlinks=False)
            self.stats.opaque_dirs += 1
            return
        if base.startswith(WHITEOUT + WHITEOUT):
            self.stats.skipped += 1  # other .wh..wh.* names are AUFS bookkeeping
            return
        hidden = base[len(WHITEOUT):]
        if hidden in ("", ".", ".."):
            raise LayerError(f"{name!r}: whiteout of nothing.")
        path = os.path.join(directory, hidden)
        self.clear(path, keep_dir=False)
        # overlayfs whiteout: a character device 0/0 hides the lower entry of that name.
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
        os.lchown(path, self.policy.uid_base, self.policy.uid_base)
        self.stats.whiteouts += 1

    def xattrs(self, m: tarfile.TarInfo, path: str) -> None:
        """Set the xattrs a PAX header carries (`SCHILY.xattr.<name>`), allowed names only."""
        for key, value in sorted(m.pax_headers.items()):
            if not key.startswith("SCHILY.xattr."):
                continue
            attr = key[len("SCHILY.xattr."):]
            if not (attr.startswith(XATTR_PREFIXES) or attr in XATTR_NAMES):
                self.stats.skipped += 1
                continue
            data = value.encode("utf-8", "surrogateescape")
            os.setxattr(path, attr, data, follow_symlinks=False)


def apply_layer(stream: BinaryIO, dest: Path, policy: LayerPolicy) -> LayerStats:
    """Apply a layer tar (plain or gzip) from `stream` onto the empty directory `dest`."""
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            return _Applier(dest, policy).apply(tar)
    except LayerError:
        raise
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise LayerError(f"not a valid layer tar: {exc}") from exc
    except OSError as exc:
        raise LayerError(f"could not apply layer: {exc}") from exc
