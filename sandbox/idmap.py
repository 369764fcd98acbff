"""Idmapped mounts: the shared image layers, stored once on disk owned by the store's
range (`LAB_SANDBOX_UID`…), seen by each sandbox as owned by its own uid range.

runc 1.1 (Debian's) cannot make idmapped mounts, so the host makes them before runc
starts, with the new mount API (`open_tree`, `mount_setattr(MOUNT_ATTR_IDMAP)`,
`move_mount`; Linux ≥ 5.12, and ≥ 5.19 for overlayfs over an idmapped lowerdir).
The mapping is a user namespace that nothing runs in: made by a child that unshares
it, mapped by this (root) process, kept by the mounts that use it once the child is
gone. It maps the stored ids to the session's: "<stored> <base> <count>".
"""
from __future__ import annotations

import ctypes
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sandbox.exceptions import SandboxError

# Generic system call numbers (the same on x86_64 and arm64).
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR_IDMAP = 0x100000
CLONE_NEWUSER = 0x10000000
MS_BIND = 4096
_ATTR_WORDS = {"ro": MOUNT_ATTR_RDONLY, "nosuid": MOUNT_ATTR_NOSUID, "nodev": MOUNT_ATTR_NODEV,
               "noexec": MOUNT_ATTR_NOEXEC}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _MountAttr(ctypes.Structure):
    """struct mount_attr (MOUNT_ATTR_SIZE_VER0)."""

    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


@dataclass(frozen=True)
class IdShift:
    """Ids stored from `stored` appear from `base`, `count` of them."""

    stored: int
    base: int
    count: int = 65536

    def line(self) -> bytes:
        """One line of /proc/<pid>/uid_map: inside, outside, count."""
        return f"{self.stored} {self.base} {self.count}\n".encode()


def _fail(what: str) -> SandboxError:
    err = ctypes.get_errno()
    return SandboxError(f"{what}: {os.strerror(err)}")


def userns_open(shift: IdShift) -> int:
    """A user namespace mapping `shift` (uids and gids), as an fd the caller closes."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only async-signal-safe calls until _exit
        try:
            os.close(ready_r)
            os.close(done_w)
            ok = _libc.unshare(CLONE_NEWUSER) == 0
            os.write(ready_w, b"1" if ok else b"0")
            os.read(done_r, 1)  # kept alive until the parent holds the namespace
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise SandboxError("could not make a user namespace for the idmapped layers")
        # Written by the parent (root in the initial namespace): any map is allowed.
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "wb", buffering=0) as f:
                f.write(shift.line())
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)  # the child reads EOF and exits
        os.waitpid(pid, 0)


def userns_pinned(shift: IdShift, pins: Path) -> int:
    """userns_open, made once per mapping and kept by a bind mount of its nsfs file in
    `pins` (root only): forking a worker the size of a Django process costs ~10-20 ms a
    start; opening the pin costs microseconds. A pin holds no process, and no file of
    the range: only the mapping, which never changes for a range."""
    path = pins / f"{shift.stored}-{shift.base}-{shift.count}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = -1
    if fd >= 0:
        if os.fstat(fd).st_dev == os.stat("/proc/self/ns/user").st_dev:  # an nsfs file: the pin
            return fd
        os.close(fd)  # the empty mount point of a pin not made (a crash between the two)
    fd = userns_open(shift)
    try:
        pins.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch(mode=0o600)
        if _libc.mount(f"/proc/self/fd/{fd}".encode(), str(path).encode(), None, MS_BIND, None) != 0:
            raise _fail(f"pin the user namespace of {path.name}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def mount_idmapped(source: Path, target: Path, *, userns: int, options: tuple[str, ...] = ()) -> None:
    """Bind `source` on `target` with its owners mapped through `userns`; `options` may
    be ro, nosuid, nodev, noexec (set in the same call, before anyone sees the mount)."""
    attrs = MOUNT_ATTR_IDMAP
    for opt in options:
        attrs |= _ATTR_WORDS.get(opt, 0)
    # A detached copy of the directory's mount: nobody can reach it until it is moved.
    fd = _libc.syscall(SYS_OPEN_TREE, AT_FDCWD, str(source).encode(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)
    if fd < 0:
        raise _fail(f"open_tree {source}")
    try:
        attr = _MountAttr(attrs, 0, 0, userns)
        # The idmapping can only be set on a detached mount that has none yet.
        if _libc.syscall(SYS_MOUNT_SETATTR, fd, b"", AT_EMPTY_PATH, ctypes.byref(attr), ctypes.sizeof(attr)) < 0:
            raise _fail(f"mount_setattr(MOUNT_ATTR_IDMAP) {source}")
        # Attach it where the overlay (and the views) will find it.
        if _libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, str(target).encode(), MOVE_MOUNT_F_EMPTY_PATH) < 0:
            raise _fail(f"move_mount {source} to {target}")
    finally:
        os.close(fd)


def shift_tree(root: Path, *, src: int, dst: int, count: int = 65536) -> None:
    """Move the owners of everything under `root` (itself included) from ids `src`…
    to `dst`… (ids outside that range are left alone); set-id bits survive the chown."""
    if src == dst:
        return

    def shift(path: str, st: os.stat_result) -> None:
        uid, gid = st.st_uid, st.st_gid
        new_uid = uid - src + dst if src <= uid < src + count else uid
        new_gid = gid - src + dst if src <= gid < src + count else gid
        if (new_uid, new_gid) == (uid, gid):
            return
        os.lchown(path, new_uid, new_gid)
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(path, stat.S_IMODE(st.st_mode))  # chown cleared them

    shift(str(root), os.lstat(root))
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            shift(path, os.lstat(path))
