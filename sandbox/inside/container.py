"""The container as the kernel sees it, read from the host's /proc and cgroupfs: its
namespaces, cgroup figures against their limits, mount table (the overlay's
lowerdir/upperdir/workdir named as layers) and the processes of its PID namespace."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sandbox.exceptions import SandboxError
from sandbox.images import spec
from sandbox.inside.layers import Stack
from sandbox.snapshots import Layout

NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")
CGROUP_ROOT = Path("/sys/fs/cgroup")
MAX_PROCESSES = 500
MAX_MOUNTS = 300


def init_pid(layout: Layout) -> int:
    """The host pid of the sandbox's init (runc wrote it at start)."""
    try:
        pid = int((layout.root / "init.pid").read_text().strip())
    except (OSError, ValueError):
        raise SandboxError("沙箱不在这台主机上运行。This sandbox is not running here.") from None
    if not Path(f"/proc/{pid}").exists():
        raise SandboxError("沙箱的 init 已经退出。This sandbox's init has exited.")
    return pid


def _ns(pid: int | str) -> dict[str, str]:
    out = {}
    for name in NAMESPACES:
        try:
            out[name] = os.readlink(f"/proc/{pid}/ns/{name}")
        except OSError:
            continue
    return out


def namespaces(pid: int) -> list[dict[str, Any]]:
    """Each namespace of the sandbox's init, and whether the host shares it."""
    mine, host = _ns(pid), _ns(1)
    return [{"type": name, "id": ident, "shared_with_host": host.get(name) == ident} for name, ident in mine.items()]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None  # "max"


def cgroups(pid: int) -> dict[str, Any]:
    """memory, pids and cpu figures of the sandbox's cgroup, each against its limit."""
    paths: dict[str, str] = {}
    for line in (_read(Path(f"/proc/{pid}/cgroup")) or "").splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else ["unified"]:
            paths[c] = path
    unified = paths.get("unified")
    if "memory" in paths:  # cgroup v1 (or hybrid)
        mem, pids, cpu = (CGROUP_ROOT / c / paths.get(c, "/").lstrip("/") for c in ("memory", "pids", "cpu"))
        acct = CGROUP_ROOT / "cpuacct" / paths.get("cpuacct", paths.get("cpu", "/")).lstrip("/")
        quota, period = _int(_read(cpu / "cpu.cfs_quota_us")), _int(_read(cpu / "cpu.cfs_period_us"))
        usage_ns = _int(_read(acct / "cpuacct.usage"))
        return {
            "version": 1, "path": paths["memory"],
            "memory": {"current": _int(_read(mem / "memory.usage_in_bytes")),
                       "limit": _int(_read(mem / "memory.limit_in_bytes")),
                       "peak": _int(_read(mem / "memory.max_usage_in_bytes"))},
            "pids": {"current": _int(_read(pids / "pids.current")), "limit": _int(_read(pids / "pids.max"))},
            "cpu": {"usage_seconds": usage_ns / 1e9 if usage_ns is not None else None,
                    "limit_cpus": quota / period if quota and quota > 0 and period else None},
        }
    base = CGROUP_ROOT / (unified or "/").lstrip("/")
    cpu_max = (_read(base / "cpu.max") or "max 100000").split()
    stat = dict(line.split() for line in (_read(base / "cpu.stat") or "").splitlines() if " " in line)
    return {
        "version": 2, "path": unified,
        "memory": {"current": _int(_read(base / "memory.current")), "limit": _int(_read(base / "memory.max")),
                   "peak": _int(_read(base / "memory.peak"))},
        "pids": {"current": _int(_read(base / "pids.current")), "limit": _int(_read(base / "pids.max"))},
        "cpu": {"usage_seconds": int(stat["usage_usec"]) / 1e6 if "usage_usec" in stat else None,
                "limit_cpus": int(cpu_max[0]) / int(cpu_max[1]) if cpu_max[0] != "max" else None},
    }


def _layer_names(stack: Stack, layout: Layout) -> dict[str, str]:
    """Host directory -> the name the panel shows for it."""
    names = {}
    for i, (layer, d) in enumerate(zip(stack.layers, stack.dirs)):
        label = f"layer {i} {spec.hexof(layer.diff_id)[:12]}"
        names[str(d)] = label
        try:
            # Many layers are mounted by their short links (l/<id>) instead.
            link = json.loads((d.parent / "layer.json").read_text())["link"]
            names[f"l/{link}"] = label
        except (OSError, ValueError, KeyError):
            pass
    names[str(layout.upper)] = "container layer (upperdir)"
    names[str(layout.work)] = "overlay workdir"
    return names


def _unescape(text: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return text.encode().decode("unicode_escape") if "\\" in text else text


def mounts(pid: int, stack: Stack, layout: Layout) -> list[dict[str, Any]]:
    """The sandbox's mount table (as its init sees it); overlay options decoded."""
    names = _layer_names(stack, layout)
    out = []
    for line in (_read(Path(f"/proc/{pid}/mountinfo")) or "").splitlines()[:MAX_MOUNTS]:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or len(tail) < 3:
            continue
        entry: dict[str, Any] = {"target": _unescape(fields[4]), "type": tail[0], "source": _unescape(tail[1]),
                                 "options": fields[5]}
        if tail[0] == "overlay":
            overlay: dict[str, Any] = {}
            for opt in tail[2].split(","):
                key, _, value = opt.partition("=")
                if key == "lowerdir":
                    # Top first, as overlayfs takes them.
                    overlay["lowerdir"] = [{"path": p, "layer": names.get(p, "")} for p in _unescape(value).split(":")]
                elif key in ("upperdir", "workdir"):
                    overlay[key] = {"path": _unescape(value), "layer": names.get(_unescape(value), "")}
            entry["overlay"] = overlay
        out.append(entry)
    return out


def _status(pid: str) -> dict[str, str]:
    out = {}
    for line in (_read(Path(f"/proc/{pid}/status")) or "").splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def processes(pid: int, uid_base: int) -> list[dict[str, Any]]:
    """Processes in the sandbox's PID namespace (pids as seen inside), with the
    namespaces where one differs from init's (after an `unshare`)."""
    init_ns = _ns(pid)
    pidns = init_ns.get("pid")
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry.name}/ns/pid") != pidns:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        status = _status(entry.name)
        nspid = status.get("NSpid", "").split()
        uid = _int((status.get("Uid") or "0").split()[0]) or 0
        own = _ns(entry.name)
        out.append({"pid": int(nspid[-1]) if nspid else None, "ppid_host": _int(status.get("PPid")),
                    "host_pid": int(entry.name), "name": status.get("Name", ""),
                    "cmdline": cmdline[:300], "uid": uid - uid_base if uid >= uid_base else uid,
                    "state": status.get("State", ""),
                    "namespaces": {k: v for k, v in own.items() if init_ns.get(k) != v}})
        if len(out) >= MAX_PROCESSES:
            break
    host_to_inner = {p["host_pid"]: p["pid"] for p in out}
    for p in out:
        p["ppid"] = host_to_inner.get(p.pop("ppid_host"), 0)
        p.pop("host_pid")
    return sorted(out, key=lambda p: p["pid"] or 0)
