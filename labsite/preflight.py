"""What `./lab up` needs from the machine, checked before anything starts.

Each check answers None or one line: what is missing, and how to fix it. Standard
library only: it runs before Django is set up, on machines where much may be missing.
"""
from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Callable

# Below this much free space under the data directory, layers and sandboxes fail.
MIN_FREE_BYTES = 1 << 30
# The layout of the data directory; a directory written by an older layout is refused.
DATA_LAYOUT = "2"


def check_root() -> str | None:
    """Sandboxes need runc, mounts and cgroups."""
    if os.geteuid() != 0:
        return "not running as root: sandboxes need runc, mounts and cgroups — run `sudo ./lab up`"
    return None


def check_overlay(filesystems: Path = Path("/proc/filesystems")) -> str | None:
    """The sandbox's root is an overlay mount."""
    try:
        text = filesystems.read_text()
    except OSError:
        text = ""
    if "\toverlay\n" in text or text.endswith("\toverlay"):
        return None
    if shutil.which("modprobe") and os.system("modprobe overlay >/dev/null 2>&1") == 0:
        return None
    return "the kernel has no overlay file system — load it with `modprobe overlay` (kernel config CONFIG_OVERLAY_FS)"


def check_memory_cgroup(root: Path = Path("/sys/fs/cgroup")) -> str | None:
    """Memory limits need the memory controller (cgroup v1 or v2)."""
    if (root / "memory" / "memory.limit_in_bytes").exists():
        return None
    try:
        if "memory" in (root / "cgroup.controllers").read_text().split():
            return None
    except OSError:
        pass
    return ("no cgroup memory controller — boot with `cgroup_enable=memory` (and, on cgroup v2, "
            "enable it: `echo +memory > /sys/fs/cgroup/cgroup.subtree_control`)")


def check_user_namespaces(path: Path = Path("/proc/sys/user/max_user_namespaces")) -> str | None:
    """Every sandbox runs in a user namespace."""
    try:
        if int(path.read_text()) > 0:
            return None
    except (OSError, ValueError):
        return None  # an old kernel without the knob allows them
    return "user namespaces are disabled — `sysctl -w user.max_user_namespaces=15000`"


def check_runc(runc: str) -> str | None:
    """runc runs the sandboxes."""
    if shutil.which(runc):
        return None
    return f"`{runc}` is not installed — `apt-get install runc` (or set LAB_RUNC to its path)"


def check_port(port: int, what: str, env_name: str) -> str | None:
    """The port is free on 127.0.0.1."""
    if not 0 < port < 65536:
        return f"{env_name}={port} is not a TCP port — use a number from 1 to 65535"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As the servers themselves bind: a port whose last connections linger in
        # TIME_WAIT (a lab stopped a moment ago) is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return f"port {port} ({what}) is already in use — stop what uses it (`ss -ltnp 'sport = :{port}'`) or set {env_name}"
    return None


def check_data_dir(data_dir: Path) -> str | None:
    """The data directory is writable, has room, and is of this version's layout."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-test"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as exc:
        return f"cannot write to the data directory {data_dir}: {exc.strerror} — fix it or set LAB_DATA_DIR"
    free = shutil.disk_usage(data_dir).free
    if free < MIN_FREE_BYTES:
        return (f"only {free >> 20} MiB free under {data_dir}; the lab needs at least {MIN_FREE_BYTES >> 20} MiB — "
                "free some space or set LAB_DATA_DIR to a larger disk")
    stamp = data_dir / "LAYOUT"
    if stamp.exists() and stamp.read_text().strip() != DATA_LAYOUT:
        return (f"{data_dir} was written by another version of the lab (layout {stamp.read_text().strip()!r}, "
                f"this one uses {DATA_LAYOUT!r}) — move it away, or set LAB_DATA_DIR to a new directory")
    return None


def check_idmapped_layers(release: str | None = None, ranges: str | None = None) -> str | None:
    """Per-session uid ranges see the layers through idmapped mounts, which overlayfs
    takes as lowerdirs from Linux 5.19 on."""
    ranges = os.environ.get("LAB_SANDBOX_RANGES", "1024") if ranges is None else ranges
    if ranges.strip() == "0":
        return None
    release = release or os.uname().release
    try:
        version = tuple(int(x) for x in release.split("-")[0].split(".")[:2])
    except ValueError:
        return None  # an odd release string: let the first sandbox tell
    if version >= (5, 19):
        return None
    return (f"kernel {release} cannot stack idmapped layers under an overlay (needs 5.19) — upgrade the kernel, "
            "or set LAB_SANDBOX_RANGES=0 (every sandbox shares one uid range; docs/security.md)")


def problems(*, data_dir: Path, web_port: int, redis_port: int | None, runc: str) -> list[str]:
    """Every problem found, one line each (empty when the machine is ready)."""
    checks: list[Callable[[], str | None]] = [
        check_root, check_overlay, check_memory_cgroup, check_user_namespaces, check_idmapped_layers,
        lambda: check_runc(runc),
        lambda: check_port(web_port, "the web server", "LAB_PORT"),
        lambda: check_data_dir(data_dir),
    ]
    if redis_port is not None:
        checks.append(lambda: check_port(redis_port, "the private Redis", "LAB_REDIS_PORT"))
    return [p for p in (c() for c in checks) if p]


def stamp_layout(data_dir: Path) -> None:
    """Mark the data directory as this version's layout."""
    (data_dir / "LAYOUT").write_text(DATA_LAYOUT + "\n")
