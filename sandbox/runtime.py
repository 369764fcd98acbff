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
from dataclasses import dataclass
from pathlib import Path

from sandbox.config import HostConfig
from sandbox.exceptions import RuntimeFailed, SandboxError
from sandbox.scripts import ExecResult, script_run
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
# Kernel counters that are charged up the user-namespace chain to the namespace's owner
# (host root, which created it) or are shared by every sandbox: bounded per sandbox so
# that `capacity` sandboxes at their worst stay far below the host's own limits
# (docs/security.md, *Kernel-global quotas*).
RLIMITS = [
    {"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 1024},
    {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
    # Queued signals: 200 sandboxes x 256 stays under host root's ~96,000.
    {"type": "RLIMIT_SIGPENDING", "hard": 256, "soft": 256},
    # POSIX message queues: none (host root's 800 KiB would be shared by every sandbox).
    {"type": "RLIMIT_MSGQUEUE", "hard": 0, "soft": 0},
]
# user.max_*_namespaces inside the sandbox's own user namespace (the kernel keeps these
# per user namespace; sandbox root lacks CAP_SYS_RESOURCE to raise them). 200 sandboxes
# x 64 stays far under the host's limit per type (~96,000 here).
NAMESPACE_MAX = {
    "user": 0, "mnt": 64, "pid": 64, "uts": 64, "ipc": 64, "net": 64, "cgroup": 64, "time": 64,
}
NSENTER = "/usr/bin/nsenter"
HOOK_SHELL = "/bin/busybox"


def limits_hook(*, cgroups_path: str, tcp_bytes: int) -> dict:
    """OCI createRuntime hook: runs on the host after runc made the sandbox's namespaces
    and cgroups and before its process starts. It sets the TCP buffer limit of the
    sandbox's v1 memory cgroup (runc 1.1 ignores `kernelTCP`; sockets made before the
    limit would never be charged), and the user namespace's own namespace counts."""
    tcp = f"/sys/fs/cgroup/memory/{cgroups_path.strip('/')}/memory.kmem.tcp.limit_in_bytes"
    writes = "; ".join(f"echo {n} > /proc/sys/user/max_{k}_namespaces" for k, n in NAMESPACE_MAX.items())
    script = (
        # cgroup v2 charges socket memory to memory.current anyway: no file, nothing to do.
        f"if [ -e {tcp} ]; then echo {tcp_bytes} > {tcp} || exit 1; fi; "
        # The container state arrives on stdin as JSON; take "pid" from it.
        r'read -r s; p=$(echo "$s" | sed -n "s/.*\"pid\":\([0-9]*\).*/\1/p"); '
        f'exec {NSENTER} --user --target "$p" -- {HOOK_SHELL} sh -c "{writes}"'
    )
    return {"path": HOOK_SHELL, "args": ["busybox", "sh", "-c", script], "timeout": 10}


# What a lab may ask for, per session (enforced when a lab is loaded or uploaded, and
# clamped again at start for labs imported before): a few sessions at the top of these
# cannot exhaust a host, whose sandbox parent cgroup also caps the sum (sandbox/quotas.py).
LIMIT_RANGES: dict[str, tuple[float, float]] = {
    "memory_mb": (16, 2048), "pids": (8, 512), "cpu": (0.1, 2), "disk_mb": (8, 2048),
}


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox."""

    memory_mb: int = 256
    pids: int = 128
    cpu: float = 1.0
    disk_mb: int = 256
    network: bool = False
    ptys: int = 32

    @property
    def tcp_bytes(self) -> int:
        """Socket buffer memory of the sandbox: a quarter of its memory, at most 32 MiB."""
        return min(self.memory_mb * 2**20 // 4, 32 * 2**20)

    @classmethod
    def from_lab(cls, limits: dict) -> Limits:
        """The runtime part of a lab's `limits:` (lifetime and idle are the web's)."""
        kept = {k: limits[k] for k in ("memory_mb", "pids", "cpu", "disk_mb", "network") if k in limits}
        for key, (low, high) in LIMIT_RANGES.items():
            if key in kept:
                kept[key] = type(kept[key])(min(max(kept[key], low), high))
        return cls(**kept)


def sandbox_spec(
    *, sid: str, rootfs: Path, views: Path, hostname: str, uid: int, id_count: int,
    cgroup_parent: str, limits: Limits, args: list[str] | None = None, terminal: bool = True,
    volumes: list[tuple[str, Path]] | None = None,
    cols: int = 80, rows: int = 24,
) -> dict:
    """The OCI runtime config for one sandbox; `volumes` are (destination, host directory) binds."""
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
            "rlimits": RLIMITS,
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
            *({"destination": dest, "type": "bind", "source": str(src), "options": ["rbind", "nosuid", "nodev"]}
              for dest, src in volumes or ()),
        ],
        "hooks": {"createRuntime": [limits_hook(cgroups_path=f"{cgroup_parent}/{sid}", tcp_bytes=limits.tcp_bytes)]},
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": uid, "size": id_count}],
            "gidMappings": [{"containerID": 0, "hostID": uid, "size": id_count}],
            "namespaces": [{"type": t} for t in ns],
            "cgroupsPath": f"{cgroup_parent}/{sid}",
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}],
                # kernelTCP: socket buffers are charged to the sandbox only once a TCP
                # limit is set (cgroup v1); otherwise only to the host-wide tcp_mem.
                "memory": {"limit": limits.memory_mb * 2**20, "swap": limits.memory_mb * 2**20,
                           "kernelTCP": limits.tcp_bytes},
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


def runc_exec(cfg: HostConfig, sid: str, script: str, *, timeout: float, env: dict[str, str] | None = None,
              check: bool = False) -> ExecResult:
    """Run a shell script inside the sandbox (no terminal) with the host's trusted shell;
    see sandbox/scripts.py for what makes a check's result trustworthy."""
    return script_run(cfg, sid, script, timeout=timeout, env=env, check=check)


def runc_delete(cfg: HostConfig, sid: str) -> None:
    """Kill and delete a container; one that does not exist is fine."""
    proc = subprocess.run(_runc(cfg, "delete", "--force", sid), capture_output=True, text=True)
    if proc.returncode != 0 and "does not exist" not in proc.stderr and "not exist" not in proc.stderr:
        raise RuntimeFailed(f"runc delete {sid}: {proc.stderr.strip()}")


def runc_list(cfg: HostConfig) -> list[dict]:
    """Containers runc knows on this host (id, status, pid)."""
    if not cfg.runc_root.exists():
        return []
    for _ in range(5):
        proc = subprocess.run(_runc(cfg, "list", "--format", "json"), capture_output=True, text=True)
        # A container deleted while runc lists them fails the whole list ("stat …: no such
        # file or directory"): list again (starts and stops of a busy host race like this).
        if proc.returncode == 0 or "no such file or directory" not in proc.stderr:
            break
    if proc.returncode != 0:
        raise RuntimeFailed(f"runc list: {proc.stderr.strip()}")
    return json.loads(proc.stdout or "null") or []