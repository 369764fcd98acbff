"""Host-side limits of sandboxes that the OCI spec cannot express, applied by the host:
host sysctls with documented values, and cgroup settings made after runc started the
sandbox. docs/security.md (*Kernel-global quotas*) says why each is there.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.config import HostConfig

log = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SYS = Path("/proc/sys")

# Host sysctls a sandbox host needs, and why.
HOST_SYSCTLS = {
    # Pipe buffers are counted per host uid; with one uid range for every sandbox
    # (LAB_SANDBOX_RANGES=0), one sandbox past the soft limit (64 MiB of pipe slots) would
    # shrink every other sandbox's pipes to one page. Pipe memory is charged to the
    # writer's memory cgroup, which bounds each sandbox on its own: no per-uid soft limit.
    "fs/pipe-user-pages-soft": "0",
}


# What a sandbox in use typically holds (a shell, an editor, a few tools): capacity is
# how many of those the sandbox budget holds. The parent cgroup, not capacity, is what
# guarantees the host: a capacity too high only means sandboxes squeeze each other.
TYPICAL_MEMORY = 64 * 2**20
TYPICAL_PIDS = 16
_prepared: set[str] = set()


@dataclass(frozen=True)
class HostBudget:
    """What all sandboxes of a host may use together, derived from the host."""

    memory_bytes: int
    pids: int
    tcp_bytes: int
    capacity: int


def _meminfo_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def host_budget() -> HostBudget:
    """The sandboxes' share of this host: memory less what the host keeps (an eighth,
    at least 2 GiB, for Redis, the database, web and workers), half the pids
    (`kernel.pid_max` and `threads-max`), half of `tcp_mem`'s pressure threshold."""
    total = _meminfo_total()
    memory = total - max(2 * 2**30, total // 8)
    pid_max = min(int((PROC_SYS / "kernel/pid_max").read_text()), int((PROC_SYS / "kernel/threads-max").read_text()))
    pids = pid_max // 2
    tcp_pressure_pages = int((PROC_SYS / "net/ipv4/tcp_mem").read_text().split()[1])
    tcp = tcp_pressure_pages * 4096 // 2
    capacity = max(1, min(memory // TYPICAL_MEMORY, pids // TYPICAL_PIDS))
    return HostBudget(memory_bytes=memory, pids=pids, tcp_bytes=tcp, capacity=capacity)


def parent_cgroup_limit(cfg: HostConfig, budget: HostBudget) -> None:
    """Cap the sum of the host's sandboxes in their parent cgroup (made before runc makes
    the first sandbox below it): memory (and memory+swap), TCP buffers, pids."""
    memory = v1_parent(cfg, "memory")
    pids = v1_parent(cfg, "pids")
    for d in (memory, pids):
        d.mkdir(parents=True, exist_ok=True)
    (memory / "memory.limit_in_bytes").write_text(str(budget.memory_bytes))
    if (memory / "memory.memsw.limit_in_bytes").exists():
        (memory / "memory.memsw.limit_in_bytes").write_text(str(budget.memory_bytes))
    if (memory / "memory.kmem.tcp.limit_in_bytes").exists():
        (memory / "memory.kmem.tcp.limit_in_bytes").write_text(str(budget.tcp_bytes))
    (pids / "pids.max").write_text(str(budget.pids))


def host_prepare(cfg: HostConfig) -> None:
    """Once per process and host: HOST_SYSCTLS and the parent cgroup's caps (each
    logged, not fatal, if refused: a non-root test run, a cgroup v2 host)."""
    if cfg.host in _prepared:
        return
    for key, value in HOST_SYSCTLS.items():
        path = PROC_SYS / key
        try:
            if path.read_text().strip() != value:
                path.write_text(value)
        except OSError as exc:
            log.warning("could not set %s=%s: %s", key.replace("/", "."), value, exc)
    try:
        parent_cgroup_limit(cfg, host_budget())
    except OSError as exc:
        log.warning("could not cap the sandboxes' parent cgroup of %s: %s", cfg.host, exc)
    _prepared.add(cfg.host)


def v1_parent(cfg: HostConfig, controller: str) -> Path:
    """The host's sandbox parent directory in one cgroup v1 hierarchy."""
    return CGROUP_ROOT / controller / cfg.cgroup_parent.strip("/")


def v1_cgroup(cfg: HostConfig, sid: str, controller: str) -> Path:
    """The sandbox's directory in one cgroup v1 hierarchy."""
    return CGROUP_ROOT / controller / cfg.cgroup_parent.strip("/") / sid


def deny_new_ptys(cfg: HostConfig, sid: str) -> bool:
    """After start, refuse /dev/ptmx (c 5:2) in the sandbox's device cgroup.

    Its terminal already holds its one PTY. Any devpts instance a trainee mounts
    (`mount -t devpts -o newinstance` without `max=`) counts against the host-wide
    `kernel.pty.max` shared by every sandbox's console, and no mount option nor seccomp
    rule can tell that mount from a tmpfs; every ptmx is c 5:2, so the device cgroup
    can. False where the devices controller is not v1 (cgroup v2 uses eBPF: see docs).
    """
    deny = v1_cgroup(cfg, sid, "devices") / "devices.deny"
    if not deny.exists():
        return False
    deny.write_text("c 5:2 rwm")
    return True
