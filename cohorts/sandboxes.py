"""Reads for the admins' sandbox overview: live sandboxes per worker host, their uptime,
idle time and cgroup usage, each host's capacity, and recent failures.

Idle time comes from the relay heartbeat (`activity`: last keystroke per session).
Memory, CPU and pids come from the sandbox's cgroup (v1) under
/sys/fs/cgroup/<controller>/container-lab/<host>/<sid>/, which exists only on the
machine that runs the sandbox: for a host on another machine they are "remote".
"""
from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from labs.models import Session
from labs.selectors import display_name, hosts_alive

CGROUP_ROOT = Path("/sys/fs/cgroup")
RECENT_FAILURES = timedelta(hours=24)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def sandbox_cgroup(*, host: str, sid: str, root: Path = CGROUP_ROOT) -> dict | None:
    """Memory (bytes), CPU time (seconds) and pids of a sandbox from its cgroup v1
    directories; None when they are not on this machine (a remote host, or gone)."""
    memory = root / "memory" / "container-lab" / host / sid
    if not memory.is_dir():
        return None
    cpu_ns = _read_int(root / "cpuacct" / "container-lab" / host / sid / "cpuacct.usage")
    used, limit = _read_int(memory / "memory.usage_in_bytes"), _read_int(memory / "memory.limit_in_bytes")
    return {
        "memory_bytes": used, "memory_limit": limit,
        "memory_mib": round(used / 2**20, 1) if used is not None else None,
        # cgroup v1 says "no limit" with a huge number
        "memory_limit_mib": round(limit / 2**20) if limit is not None and limit < 2**50 else None,
        "cpu_seconds": round(cpu_ns / 1e9, 2) if cpu_ns is not None else None,
        "pids": _read_int(root / "pids" / "container-lab" / host / sid / "pids.current"),
    }


def _seconds(since: datetime | None, now: datetime) -> int | None:
    return max(0, int((now - since).total_seconds())) if since else None


def sandboxes_overview(*, now: datetime | None = None) -> dict:
    """Every worker host (alive by heartbeat, or still holding live sessions in the
    database) with its capacity and live sandboxes; and the last day's failures."""
    now = now or timezone.now()
    beats = {b["host"]: b for b in hosts_alive()}
    live = Session.objects.filter(state__in=Session.LIVE_STATES).select_related("user", "lab").order_by("created_at")
    by_host: dict[str, list[Session]] = {}
    for session in live:
        by_host.setdefault(session.host, []).append(session)
    hosts = []
    for name in sorted(set(beats) | set(by_host)):
        beat = beats.get(name)
        activity = (beat or {}).get("activity") or {}
        sandboxes = []
        for s in by_host.get(name, []):
            last = activity.get(s.id)
            last_input = datetime.fromtimestamp(last, tz=dt_timezone.utc) if last else s.ready_at
            cgroup = sandbox_cgroup(host=name, sid=s.id)
            sandboxes.append({
                "id": s.id, "user": s.user.get_username(), "name": display_name(s.user),
                "lab": s.lab.slug, "state": s.state,
                "uptime": _seconds(s.ready_at or s.created_at, now), "idle": _seconds(last_input, now),
                "expires_in": _seconds(now, s.expires_at) if s.expires_at else None,
                "cgroup": cgroup, "remote": cgroup is None,
            })
        hosts.append({
            "host": name, "alive": beat is not None,
            "capacity": beat["capacity"] if beat else None, "relay_live": beat["live"] if beat else None,
            "heartbeat_age": round(now.timestamp() - beat["ts"], 1) if beat else None,
            "live": len(sandboxes), "sandboxes": sandboxes,
        })
    failures = (Session.objects.filter(state__in=[Session.State.FAILED, Session.State.LOST],
                                       ended_at__gte=now - RECENT_FAILURES)
                .select_related("user", "lab").order_by("-ended_at")[:100])
    per_user: dict[str, int] = {}
    names: dict[str, str] = {}
    for session in live:
        per_user[session.user.get_username()] = per_user.get(session.user.get_username(), 0) + 1
        names[session.user.get_username()] = display_name(session.user)
    limit = int(settings.LAB_USER_SESSION_LIMIT)
    return {
        "generated_at": now.isoformat(),
        "user_limit": limit,
        "users": [{"user": name, "name": names[name], "live": n, "at_limit": n >= limit}
                  for name, n in sorted(per_user.items(), key=lambda item: (-item[1], item[0]))],
        "hosts": hosts,
        "failures": [{"id": s.id, "user": s.user.get_username(), "lab": s.lab.slug, "host": s.host,
                      "state": s.state, "message": s.message, "ended_at": s.ended_at.isoformat()} for s in failures],
    }
