"""The OCI runtime spec of a sandbox, and the runc calls made outside the relay.

`sandbox_spec` returns config.json as data (unit-testable without root);
`runc_exec`, `runc_delete` and `runc_list` are the few runc commands run from a
Celery worker. Starting a sandbox with a terminal happens in the relay, which must
receive the PTY master over runc's console socket.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox.config import HostConfig
from sandbox.exceptions import CheckTimeout, RuntimeFailed, SandboxError
from sandbox.seccomp import seccomp_profile

# Docker's default capability set, plus CAP_SYS_ADMIN: the lessons mount overlays,
# unshare and pivot_root. Safe only because the user namespace is always there:
# these are capabilities over the sandbox's own namespaces, not the host's.
CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
    "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    "CAP_SYS_ADMIN",
]
# As Docker masks and protects them.
MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
]
READONLY_PATHS = [
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
]
ENV = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TERM=xterm-256color",
    "HOME=/root",
    "LANG=C.UTF-8",
]
# Inside-the-sandbox path of the init (tini) the host mounts read-only.
INIT = "/var/lib/lab/bin/init"


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox."""

    memory_mb: int = 256
    pids: int = 128
    cpu: float = 1.0
    disk_mb: int = 256
    network: bool = False
    ptys: int = 32

    @classmethod
    def from_lab(cls, limits: dict) -> Limits:
        """The runtime part of a lab's `limits:` (lifetime and idle are the web's)."""
        return cls(**{k: limits[k] for k in ("memory_mb", "pids", "cpu", "disk_mb", "network") if k in limits})


def sandbox_spec(
    *, sid: str, rootfs: Path, views: Path, hostname: str, uid: int, id_count: int,
    cgroup_parent: str, limits: Limits, args: list[str] | None = None, terminal: bool = True,
    cols: int = 80, rows: int = 24,
) -> dict:
    """The OCI runtime config for one sandbox."""
    if limits.network:
        # Without its own network namespace a sandbox shares the host's: Redis, the
        # web server and every host port on 127.0.0.1. This host has no egress
        # set up for sandboxes (veth + firewall), so refuse rather than share.
        raise SandboxError(
            "this lab asks for network access (limits.network: true), which this host "
            "does not provide: sandboxes get loopback only (see docs/security.md)"
        )
    caps = list(CAPABILITIES)
    # Always a fresh network namespace: only loopback, which runc brings up.
    ns = ["pid", "ipc", "uts", "mount", "user", "cgroup", "network"]
    spec = {
        "ociVersion": "1.0.2",
        "hostname": hostname,
        "root": {"path": str(rootfs), "readonly": False},
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": args or [INIT, "-s", "-g", "--", "/bin/sh", "-l"],
            "env": ENV,
            "cwd": "/root",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024},
                {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
            ],
            "noNewPrivileges": True,
            "oomScoreAdj": 1000,
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", f"max={limits.ptys}"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
            {"destination": "/var/lib/lab", "type": "bind", "source": str(views), "options": ["rbind", "ro", "nosuid", "nodev"]},
        ],
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": uid, "size": id_count}],
            "gidMappings": [{"containerID": 0, "hostID": uid, "size": id_count}],
            "namespaces": [{"type": t} for t in ns],
            "cgroupsPath": f"{cgroup_parent}/{sid}",
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}],
                "memory": {"limit": limits.memory_mb * 2**20, "swap": limits.memory_mb * 2**20},
                "pids": {"limit": limits.pids},
                "cpu": {"period": 100000, "quota": int(limits.cpu * 100000)},
            },
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "rootfsPropagation": "private",
            "seccomp": seccomp_profile(),
            "sysctl": {},
        },
    }
    if terminal:
        # runc sizes the PTY before the shell starts: the first prompt already knows
        # the page's geometry (no 80x24 shell until the page's resize arrives).
        spec["process"]["consoleSize"] = {"height": max(1, min(rows, 500)), "width": max(1, min(cols, 1000))}
    return spec


def write_spec(path: Path, spec: dict) -> None:
    """Write config.json atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(spec, indent=1))
    os.replace(tmp, path)


def _runc(cfg: HostConfig, *args: str) -> list[str]:
    return [cfg.runc, "--root", str(cfg.runc_root), *args]


@dataclass(frozen=True)
class ExecResult:
    """What a script run with `runc exec` returned."""

    exit_code: int
    output: str


# Runs a script inside the sandbox with its output in a file there, then prints the
# file: a process the script leaves in the background keeps that file open, not the
# stdout of `runc exec` (which would otherwise wait for it).
_EXEC_WRAPPER = (
    'o=$(mktemp /dev/shm/.lab-exec.XXXXXX 2>/dev/null || mktemp); '
    'timeout -s KILL {timeout} /bin/sh -c "$0" >"$o" 2>&1 </dev/null; rc=$?; '
    'cat "$o"; rm -f "$o"; exit $rc'
)


def runc_exec(cfg: HostConfig, sid: str, script: str, *, timeout: float) -> ExecResult:
    """Run a shell script inside the sandbox (no terminal) and return code and output.

    Past its timeout the script is killed inside the sandbox (busybox timeout) and
    CheckTimeout is raised; a script that leaves a process running is done when its
    shell exits.
    """
    wrapper = _EXEC_WRAPPER.format(timeout=max(1, int(timeout)))
    argv = _runc(cfg, "exec", "--env", "TERM=dumb", "--cwd", "/root", sid, "/bin/sh", "-c", wrapper, script)
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout + 5)
    except subprocess.TimeoutExpired as exc:
        raise CheckTimeout(f"the check did not finish within {timeout:g} s") from exc
    text = (proc.stdout[-65536:] + proc.stderr[-4096:]).decode("utf-8", "replace")
    if proc.returncode in (124, 137) and time.monotonic() - started >= timeout - 0.5:
        raise CheckTimeout(f"the check did not finish within {timeout:g} s")
    if proc.returncode != 0 and proc.stderr.startswith((b"time=", b"container_linux.go", b"exec failed", b"ERRO")):
        raise RuntimeFailed(f"runc exec failed: {proc.stderr.decode('utf-8', 'replace').strip()[-1000:]}")
    return ExecResult(proc.returncode, text[-8192:])


def runc_delete(cfg: HostConfig, sid: str) -> None:
    """Kill and delete a container; one that does not exist is fine."""
    proc = subprocess.run(_runc(cfg, "delete", "--force", sid), capture_output=True, text=True)
    if proc.returncode != 0 and "does not exist" not in proc.stderr and "not exist" not in proc.stderr:
        raise RuntimeFailed(f"runc delete {sid}: {proc.stderr.strip()}")


def runc_list(cfg: HostConfig) -> list[dict]:
    """Containers runc knows on this host (id, status, pid)."""
    if not cfg.runc_root.exists():
        return []
    proc = subprocess.run(_runc(cfg, "list", "--format", "json"), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeFailed(f"runc list: {proc.stderr.strip()}")
    return json.loads(proc.stdout or "null") or []