"""Host-side limits of sandboxes that the OCI spec cannot express, applied by the host:
host sysctls with documented values, and cgroup settings made after runc started the
sandbox. docs/security.md (*Kernel-global quotas*) says why each is there.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

from sandbox.config import HostConfig

log = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SYS = Path("/proc/sys")

# Host sysctls a sandbox host needs, and why.
HOST_SYSCTLS = {
    # Pipe buffers are counted per host uid; with one uid range for every sandbox, one
    # sandbox past the soft limit (64 MiB of pipe slots) shrinks every other sandbox's
    # pipes to one page. Pipe memory is charged to the writer's memory cgroup, which
    # bounds each sandbox on its own: no per-uid soft limit.
    "fs/pipe-user-pages-soft": "0",
}


@functools.cache
def host_prepare() -> None:
    """Set HOST_SYSCTLS once per process (idempotent; logged, not fatal, if refused)."""
    for key, value in HOST_SYSCTLS.items():
        path = PROC_SYS / key
        try:
            if path.read_text().strip() != value:
                path.write_text(value)
        except OSError as exc:
            log.warning("could not set %s=%s: %s", key.replace("/", "."), value, exc)


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
