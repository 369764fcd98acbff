"""Scripts the host runs inside a sandbox (checks, setups, solutions), so that the
trainee cannot forge their outcome nor leave a check's processes behind.

What decides a check is the exit code of a shell the trainee cannot replace:

- The shell is a host-owned copy of Debian's static busybox (`TRUSTED_SHELL`, mode
  0711), bind-mounted read-only by the host at `/var/lib/lab/bin/busybox` before runc
  makes the sandbox, so the mount is locked. Busybox here prefers its own applets
  (`sh`, `timeout`, `test`, `grep`, `awk`, …) to anything on `PATH`: a replaced
  `/bin/sh` or `/bin/grep` is never run by the wrapper, nor for an applet name in a
  check. Being unreadable to sandbox root, every process running it is not dumpable
  to the sandbox: the trainee cannot ptrace it nor write its memory.
- The path is resolved inside the sandbox, which the trainee may rename or mount over.
  So the wrapper waits on stdin until the host has checked, from its own /proc, that
  the process runc started *is* the trusted file (device and inode), with our argv and
  environment, in the sandbox's own mount namespace and root. Applets re-execute
  through `/proc/self/exe`; a mount change in the sandbox's mount namespace while the
  check runs (poll on /proc/<init>/mountinfo) voids the result.
- Setups and solutions run their script with the sandbox's own `/bin/sh` (what they
  start is the sandbox's, as if the trainee had typed it); only the wrapper is trusted.
- A check runs in its own freezer cgroup below the sandbox's (files owned by host root,
  which sandbox root cannot write): when it ends or times out, the cgroup is frozen and
  every process in it killed, so nothing it started (even with setsid) lingers.
"""
from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from sandbox.config import HostConfig
from sandbox.exceptions import CheckForged, CheckTimeout, RuntimeFailed
from sandbox.freeze import exec_slot

# Debian's busybox-static; the host copy below is what sandboxes get.
BUSYBOX = Path("/bin/busybox")
TRUSTED_SHELL = Path("/run/container-lab/bin/busybox")
# Where the host bind-mounts TRUSTED_SHELL inside every sandbox (see sandbox/snapshots.py).
SHELL = "/var/lib/lab/bin/busybox"
CHECK_CGROUP = "lab-check"
CGROUP_ROOT = Path("/sys/fs/cgroup")
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TERM": "dumb",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}

# Waits for the host's go (see module docstring), then runs the script with its output
# in a file inside the sandbox: a process the script leaves in the background keeps
# that file open, not the stdout of `runc exec`. Applet names only, never a path.
_WRAPPER = (
    'read -r go || exit 125; '
    'o=$(mktemp /dev/shm/.lab-exec.XXXXXX 2>/dev/null || mktemp); '
    'timeout -s KILL {timeout} {shell} -c "$0" >"$o" 2>&1 </dev/null; rc=$?; '
    'cat "$o"; rm -f "$o"; exit $rc'
)


@dataclass(frozen=True)
class ExecResult:
    """What a script run with `runc exec` returned."""

    exit_code: int
    output: str


def trusted_shell() -> Path:
    """The host copy of busybox that sandboxes run scripts with (made once, atomically)."""
    src = BUSYBOX.stat()
    try:
        st = TRUSTED_SHELL.stat()
        if st.st_size == src.st_size and st.st_uid == 0 and st.st_mode & 0o7777 == 0o711:
            return TRUSTED_SHELL
    except FileNotFoundError:
        pass
    TRUSTED_SHELL.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    fd, tmp = tempfile.mkstemp(dir=TRUSTED_SHELL.parent, prefix=".busybox.")
    try:
        with os.fdopen(fd, "wb") as out, BUSYBOX.open("rb") as src_file:
            shutil.copyfileobj(src_file, out)
        os.chown(tmp, 0, 0)
        # Executable, not readable, by anyone but host root: not dumpable inside.
        os.chmod(tmp, 0o711)
        os.replace(tmp, TRUSTED_SHELL)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return TRUSTED_SHELL


def _runc(cfg: HostConfig, *args: str) -> list[str]:
    return [cfg.runc, "--root", str(cfg.runc_root), *args]


def init_pid(cfg: HostConfig, sid: str) -> int:
    """Host pid of the sandbox's init: the pid file runc wrote in the bundle, else runc's state.

    A stale pid (init gone, pid reused) cannot pass: runc exec then fails, and the
    verification compares the started process's mount namespace with this one's."""
    import json

    try:
        pid = int((cfg.sessions_dir / sid / "init.pid").read_text())
        if Path(f"/proc/{pid}").exists():
            return pid
    except (FileNotFoundError, ValueError):
        pass
    proc = subprocess.run(_runc(cfg, "state", sid), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeFailed(f"runc state {sid}: {proc.stderr.strip()[-500:]}")
    state = json.loads(proc.stdout)
    if state.get("status") != "running":
        raise RuntimeFailed(f"the sandbox is {state.get('status')}, not running")
    return int(state["pid"])


def _mount_points(mountinfo: str) -> list[str]:
    return [line.split()[4] for line in mountinfo.splitlines() if line]


def protected_mounts_intact(mountinfo: str) -> bool:
    """The trusted shell's mount is there, at its place, and nothing covers it or a parent."""
    points = _mount_points(mountinfo)
    if points.count(SHELL) != 1 or points.count("/var/lib/lab") != 1:
        return False
    parents = {"/", "/var", "/var/lib", "/var/lib/lab", "/var/lib/lab/bin", SHELL}
    expected = {"/": 1, "/var/lib/lab": 1, SHELL: 1}
    return all(points.count(p) == expected.get(p, 0) for p in parents) and "/proc" in points


def _same_file(a: str, b: str) -> bool:
    sa, sb = os.stat(a), os.stat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _verify(pid: int, init: int, argv: list[str], env: dict[str, str]) -> None:
    """The process runc started is the trusted shell with our argv and environment,
    in the sandbox's mount namespace and root; raise CheckForged if not."""
    proc = Path(f"/proc/{pid}")
    # runc writes the pid before its init has called execve: wait for the exec to finish.
    end = time.monotonic() + 5
    while not (_same_file(str(proc / "exe"), str(TRUSTED_SHELL)) and (proc / "cmdline").read_bytes()):
        if time.monotonic() > end:
            raise CheckForged("the check did not run the host's shell (was /var/lib/lab moved or covered?)")
        time.sleep(0.001)
    cmdline = (proc / "cmdline").read_bytes().split(b"\0")[:-1]
    if cmdline != [a.encode() for a in argv]:
        raise CheckForged("the check's shell was started with other arguments")
    environ = dict(e.split("=", 1) for e in (proc / "environ").read_bytes().decode("utf-8", "replace").split("\0") if "=" in e)
    if any(environ.get(k) != v for k, v in env.items()):
        raise CheckForged("the check's shell was started with another environment")
    if not (_same_file(str(proc / "ns/mnt"), f"/proc/{init}/ns/mnt") and _same_file(str(proc / "root"), f"/proc/{init}/root")):
        raise CheckForged("the check's shell is not in the sandbox's own mount namespace")


class CheckCgroup:
    """A freezer (v1) or unified (v2) cgroup below the sandbox's, holding one check."""

    def __init__(self, cfg: HostConfig, sid: str) -> None:
        rel = Path(cfg.cgroup_parent.strip("/")) / sid / CHECK_CGROUP
        if (CGROUP_ROOT / "freezer").is_dir():
            self.path, self.v2 = CGROUP_ROOT / "freezer" / rel, False
        else:
            self.path, self.v2 = CGROUP_ROOT / rel, True

    def create(self) -> None:
        """Make it (a leftover from a crashed check is emptied first)."""
        if self.path.exists():
            self.kill()
        self.path.mkdir()

    def add(self, pid: int) -> None:
        """Move a process (before it forks) into the cgroup; its children follow."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return []

    def kill(self, *, deadline: float = 10.0) -> None:
        """Kill every process in it, forks in flight included, then remove it."""
        if not self.path.exists():
            return
        if self.v2:
            (self.path / "cgroup.kill").write_text("1")
        else:
            # Frozen, nothing can fork between listing and killing.
            state = self.path / "freezer.state"
            state.write_text("FROZEN")
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            state.write_text("THAWED")
        end = time.monotonic() + deadline
        while self.pids() and time.monotonic() < end:
            time.sleep(0.01)
        try:
            self.path.rmdir()
        except OSError:
            pass


def _wait_pid_file(path: Path, runc: subprocess.Popen, deadline: float) -> int:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            text = path.read_text().strip()
            if text:
                return int(text)
        except FileNotFoundError:
            pass
        if runc.poll() is not None:
            err = runc.stderr.read().decode("utf-8", "replace").strip() if runc.stderr else ""
            raise RuntimeFailed(f"runc exec failed: {err[-1000:] or f'exit {runc.returncode}'}")
        time.sleep(0.002)
    raise RuntimeFailed("runc exec did not start the script in time")


def script_run(cfg: HostConfig, sid: str, script: str, *, timeout: float, env: dict[str, str] | None = None,
               check: bool = False) -> ExecResult:
    """Run a shell script inside the sandbox with the trusted shell; (exit code, output).

    With check=True the script runs in its own cgroup, killed whole when it ends, and
    the result is refused (CheckForged) if anything under it was swapped. Past its
    timeout the script is killed and CheckTimeout raised.
    """
    env = {**BASE_ENV, **(env or {})}
    # A check's script runs in the trusted shell too. Setups and solutions run in the
    # sandbox's own /bin/sh, as a trainee's commands would: what they leave running is
    # the sandbox's own (dumpable, visible to the trainee and to later checks).
    shell = "sh" if check else "/bin/sh"
    argv = [SHELL, "sh", "-c", _WRAPPER.format(timeout=max(1, int(timeout)), shell=shell), script]
    init = init_pid(cfg, sid)
    # Opening it records the namespace's mount event count; poll says if it moved.
    try:
        mountinfo = open(f"/proc/{init}/mountinfo", "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise RuntimeFailed(f"the sandbox's init is gone: {exc}") from exc
    cg = CheckCgroup(cfg, sid) if check else None
    with tempfile.TemporaryDirectory(prefix="lab-exec-") as tmp:
        pid_file = Path(tmp) / "pid"
        cmd = _runc(cfg, "exec", "--cwd", "/root", "--pid-file", str(pid_file),
                    *[a for k, v in env.items() for a in ("--env", f"{k}={v}")], sid, *argv)
        try:
            if check and not protected_mounts_intact(mountinfo.read().decode("utf-8", "replace")):
                raise CheckForged("the sandbox's /var/lib/lab is covered or moved: checks cannot run until it is restored")
            if cg:
                try:
                    cg.create()
                except OSError as exc:
                    raise RuntimeFailed(f"cannot make the check's cgroup (is the sandbox running?): {exc}") from exc
            started = time.monotonic()
            # runc refuses to exec in a frozen sandbox, and a process frozen before its execve
            # fails the check's verification: exec starts and checkpoints take turns (sandbox/freeze.py).
            slot = ExitStack()
            slot.enter_context(exec_slot(cfg, sid))
            try:
                runc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            except BaseException:
                slot.close()
                raise
            try:
                try:
                    pid = _wait_pid_file(pid_file, runc, 15)
                    try:
                        _verify(pid, init, argv, env)
                        if cg:
                            cg.add(pid)
                    except (FileNotFoundError, ProcessLookupError) as exc:
                        raise CheckForged("the check's shell ended before the host could verify it") from exc
                finally:
                    slot.close()  # started and verified (it waits for "go"): a freeze may come
                try:
                    out, err = runc.communicate(b"go\n", timeout=timeout + 5)
                except subprocess.TimeoutExpired as exc:
                    raise CheckTimeout(f"the check did not finish within {timeout:g} s") from exc
            finally:
                if runc.poll() is None:
                    runc.kill()
                    runc.wait()
            if check:
                # Any mount or unmount in the sandbox's namespace since we read it.
                if _mounts_changed(mountinfo):
                    raise CheckForged("the sandbox's mounts changed while the check ran; check again")
        finally:
            if cg:
                cg.kill()
            mountinfo.close()
    rc = runc.returncode
    if rc in (124, 137) and time.monotonic() - started >= timeout - 0.5:
        raise CheckTimeout(f"the check did not finish within {timeout:g} s")
    if rc != 0 and err.startswith((b"time=", b"container_linux.go", b"exec failed", b"ERRO")):
        raise RuntimeFailed(f"runc exec failed: {err.decode('utf-8', 'replace').strip()[-1000:]}")
    text = (out[-65536:] + err[-4096:]).decode("utf-8", "replace")
    return ExecResult(rc, text[-8192:])


def _mounts_changed(mountinfo) -> bool:
    """True if the mount namespace changed since mountinfo was last read (POLLPRI)."""
    p = select.poll()
    p.register(mountinfo.fileno(), select.POLLPRI | select.POLLERR)
    return any(ev & (select.POLLPRI | select.POLLERR) for _, ev in p.poll(0))
