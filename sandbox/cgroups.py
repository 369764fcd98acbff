"""The host's parent cgroup: runc creates `<cgroup_parent>/<sid>` in every hierarchy
and removes the sandbox's own directory on `runc delete`, but never the parent. A host
that stops for good removes it here, so nothing of it is left under /sys/fs/cgroup."""
from __future__ import annotations

from pathlib import Path


def cgroup_mounts(mountinfo: str | None = None) -> list[Path]:
    """Mount points of every cgroup hierarchy (v1 controllers and the v2 unified one)."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    points = []
    for line in mountinfo.splitlines():
        before, _, after = line.partition(" - ")
        if after.split(" ", 1)[0] in ("cgroup", "cgroup2"):
            points.append(Path(before.split()[4]))
    return points


def cgroup_parent_dirs(cgroup_parent: str, mountinfo: str | None = None) -> list[Path]:
    """The directories a cgroup path has, one per hierarchy, where they exist."""
    rel = cgroup_parent.strip("/")
    return [p / rel for p in cgroup_mounts(mountinfo) if rel and (p / rel).is_dir()]


def cgroup_parent_remove(cgroup_parent: str) -> list[Path]:
    """rmdir the parent cgroup and any empty child left in it, in every hierarchy;
    returns what could not be removed (still has processes)."""
    left = []
    for top in cgroup_parent_dirs(cgroup_parent):
        children = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for d in [*children, top]:
            try:
                d.rmdir()  # cgroupfs: rmdir of a directory with only control files; EBUSY while populated
            except FileNotFoundError:
                pass
            except OSError:
                left.append(d)
    return left
