"""The one place that calls mount(2) and umount(2).

Mounts are described as data (`Mount`) by sandbox.snapshots and applied here, as
containerd's snapshotters return mounts and let one function apply them.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.exceptions import SandboxError
from sandbox.idmap import mount_idmapped

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
# The kernel copies mount data into one page; longer options fail with EINVAL.
PAGE_LIMIT = os.sysconf("SC_PAGE_SIZE") - 1

_FLAG_WORDS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


@dataclass(frozen=True)
class Mount:
    """One mount: type, source, target and options, as /proc/mounts would show it."""

    type: str
    source: str
    target: Path
    options: tuple[str, ...] = ()
    # Overlay lowerdirs may be relative to this directory (keeps 128 layers in a page).
    cwd: Path | None = field(default=None, compare=False)

    def flags_and_data(self) -> tuple[int, str]:
        """Split options into mount(2) flags and the filesystem's data string."""
        flags = 0
        data = []
        for opt in self.options:
            if opt in _FLAG_WORDS:
                flags |= _FLAG_WORDS[opt]
            elif opt == "bind":
                flags |= MS_BIND
            elif opt == "rbind":
                flags |= MS_BIND | MS_REC
            else:
                data.append(opt)
        return flags, ",".join(data)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"{what}: {os.strerror(err)}")


def mount(m: Mount, *, userns: int | None = None) -> None:
    """Apply one mount; a read-only bind is a bind followed by a read-only remount; an
    `idmap` bind is made through `userns` (sandbox/idmap.py)."""
    if "idmap" in m.options:
        if userns is None:
            raise SandboxError(f"idmapped mount of {m.source} needs a user namespace")
        mount_idmapped(Path(m.source), m.target, userns=userns, options=m.options)
        return
    flags, data = m.flags_and_data()
    if m.cwd is not None:
        # Relative lowerdirs: let mount(8) run in that directory instead of chdir-ing
        # this (possibly threaded) process.
        opts = ",".join(o for o in m.options)
        proc = subprocess.run(
            ["mount", "-t", m.type, "-o", opts, m.source, str(m.target)],
            cwd=m.cwd, capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise SandboxError(f"mount {m.type} on {m.target}: {proc.stderr.strip()}")
        return
    if len(data) > PAGE_LIMIT:
        raise SandboxError(f"mount options for {m.target} exceed one page ({len(data)} bytes)")
    ret = _libc.mount(
        m.source.encode(), str(m.target).encode(), m.type.encode(),
        ctypes.c_ulong(flags & ~MS_RDONLY if flags & MS_BIND else flags),
        data.encode() if data else None,
    )
    _check(ret, f"mount {m.type} {m.source} on {m.target}")
    if flags & MS_BIND and flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC):
        # A bind ignores flags; only the remount applies them.
        ret = _libc.mount(
            None, str(m.target).encode(), None,
            ctypes.c_ulong(MS_REMOUNT | MS_BIND | (flags & ~MS_REC & ~MS_BIND)), None,
        )
        _check(ret, f"remount {m.target} read-only")


def unmount(target: Path) -> None:
    """Detach a mount and everything under it; a path that is not mounted is fine."""
    for mp in reversed(mounts_under(target)):
        ret = _libc.umount2(str(mp).encode(), MNT_DETACH)
        if ret != 0 and ctypes.get_errno() not in (22, 2):  # EINVAL: not a mount; ENOENT
            _check(ret, f"umount {mp}")


def detach(target: Path) -> None:
    """Lazily detach the mount at target (and what is mounted under it); not mounted is fine."""
    ret = _libc.umount2(str(target).encode(), MNT_DETACH)
    if ret != 0 and ctypes.get_errno() not in (22, 2):  # EINVAL: not a mount; ENOENT
        _check(ret, f"umount {target}")


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below path, outermost first, as /proc/self/mountinfo lists them."""
    prefix = str(path.resolve() if path.exists() else path)
    found: list[Path] = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if mp == prefix or mp.startswith(prefix.rstrip("/") + "/"):
                found.append(Path(mp))
    return found
