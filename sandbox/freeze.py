"""Freezing a sandbox while the host reads its container layer (a checkpoint, a commit),
so the layer is the upperdir as it was at one instant.

- The sandbox's freezer cgroup (cgroup v1 `freezer.state`, v2 `cgroup.freeze`) stops
  every process of the sandbox, checks included (their cgroup is a child of it), between
  two system calls: each write to the container layer is wholly before or wholly after.
- It is never left frozen: the thaw is in `finally`, and a guard process that does not
  die with the worker thaws it when the worker's end of its pipe closes (the worker
  ended, even by SIGKILL) or after FREEZE_MAX seconds, whichever comes first.
- `runc exec` refuses a frozen container ("cannot exec in a paused container"), so execs
  take a shared lock while runc starts them and the host verifies what started (`exec_slot`)
  and a freeze the exclusive one:
  an exec waits for the thaw instead of failing, a freeze for the exec to be started.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sandbox.config import HostConfig
from sandbox.exceptions import SandboxError

CGROUP_ROOT = Path("/sys/fs/cgroup")
# The most a sandbox stays frozen, whatever happens to the process that froze it.
FREEZE_MAX = 30
FREEZE_WAIT = 5.0
GUARD_SHELL = "/bin/busybox"
# The guard: wait until its stdin closes (or FREEZE_MAX), then thaw.
_GUARD = 'read -t "$1" x; echo "$3" > "$2"'


def _freezer(cfg: HostConfig, sid: str) -> tuple[Path, str, str, str]:
    """(control file, freeze value, thaw value, the file that says frozen) of a sandbox."""
    rel = Path(cfg.cgroup_parent.strip("/")) / sid
    v1 = CGROUP_ROOT / "freezer" / rel
    if (CGROUP_ROOT / "freezer").is_dir():
        return v1 / "freezer.state", "FROZEN", "THAWED", str(v1 / "freezer.state")
    v2 = CGROUP_ROOT / rel
    return v2 / "cgroup.freeze", "1", "0", str(v2 / "cgroup.events")


def _is_frozen(path: str, v1: bool) -> bool:
    text = Path(path).read_text()
    return text.strip() == "FROZEN" if v1 else "frozen 1" in text.split("\n")


def _lock_path(cfg: HostConfig, sid: str) -> Path:
    return cfg.sessions_dir / sid / "freeze.lock"


@contextmanager
def _locked(cfg: HostConfig, sid: str, mode: int) -> Iterator[None]:
    try:
        fd = os.open(_lock_path(cfg, sid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:  # no session directory: nothing to freeze or exec in
        yield
        return
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)


@contextmanager
def exec_slot(cfg: HostConfig, sid: str) -> Iterator[None]:
    """Held while `runc exec` starts a process in the sandbox: never while it is frozen."""
    with _locked(cfg, sid, fcntl.LOCK_SH):
        yield


def is_frozen(cfg: HostConfig, sid: str) -> bool:
    """The sandbox's cgroup is frozen now (false when it has none)."""
    control, freeze, _, status = _freezer(cfg, sid)
    try:
        return _is_frozen(status, freeze == "FROZEN")
    except FileNotFoundError:
        return False


@contextmanager
def frozen(cfg: HostConfig, sid: str) -> Iterator[float]:
    """Freeze the sandbox for the block; yields the seconds freezing took. Thawed on the
    way out, whatever happens; SandboxError if it cannot be frozen within FREEZE_WAIT."""
    control, freeze, thaw, status = _freezer(cfg, sid)
    if not control.exists():
        raise SandboxError(f"沙箱 {sid} 没有 freezer cgroup。The sandbox {sid} has no freezer cgroup (is it running?).")
    with _locked(cfg, sid, fcntl.LOCK_EX):
        guard = subprocess.Popen([GUARD_SHELL, "sh", "-c", _GUARD, "guard", str(FREEZE_MAX), str(control), thaw],
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)  # not in the worker's process group: it outlives it
        try:
            started = time.monotonic()
            control.write_text(freeze)
            # v1 says FREEZING until every task is stopped (one in uninterruptible sleep waits).
            while not _is_frozen(status, freeze == "FROZEN"):
                if time.monotonic() - started > FREEZE_WAIT:
                    raise SandboxError(f"沙箱 {sid} 没能在 {FREEZE_WAIT:g} 秒内冻结。"
                                       f"The sandbox {sid} did not freeze within {FREEZE_WAIT:g} s; try again.")
                time.sleep(0.0005)
            yield time.monotonic() - started
        finally:
            try:
                control.write_text(thaw)
            finally:
                guard.stdin.close()  # the guard thaws again (harmless) and exits
                guard.wait()
