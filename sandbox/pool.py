"""Warm pool: sandboxes started ahead of demand, idle and unassigned, handed out on Start.

A pool sandbox is an ordinary sandbox (same engine start, spec, overlay, cgroup, relay)
whose session does not exist yet: it is started under a fresh session id, and the session
a trainee's Start creates *takes that id*. Everything keyed by the id (runc container,
cgroup, session directory, hostname `lab-<id[:8]>`, terminal streams) is therefore already
what a fresh start would have made. What a fresh start sets from the request is set on
assignment (`pool_take`): the page's terminal size, the recording (it begins then), the
idle clock; the caller then runs the lab's setup exactly as after a fresh start.

A pool sandbox is never shared nor reused: the web claims one with SPOP (one caller gets
each id), and the host takes it by removing its marker file (one caller succeeds); a
sandbox whose claim or marker is gone is stopped, never put back.

Redis keys (the host's pool, per flavour = image + limits):
  lab:pool:<host>:free:<fid>   SET of claimable sandbox ids
  lab:pool:<host>:demand:<min> HASH fid -> starts in that minute (expires after the window)
  lab:pool:flavours            HASH fid -> flavour JSON (what to start for it)

No Django here: the labs app passes the settings (size, window) and the id and hostname
functions (labs/tasks.py: pool_refill). See docs/operations.md, *Warm pool*.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict
from typing import Callable

from sandbox.config import HostConfig
from sandbox.relay.client import relay_call
from sandbox.runtime import Limits

log = logging.getLogger(__name__)

MARKER = "pool.json"  # in the sandbox's session directory while it is unassigned
FLAVOURS = "lab:pool:flavours"


def flavour(image: str, limits: Limits) -> str:
    """What a pool sandbox is made of, as canonical JSON: two starts of the same lab agree."""
    return json.dumps({"image": image, "limits": asdict(limits)}, sort_keys=True)


def flavour_id(flavour_json: str) -> str:
    """A short stable name of a flavour, for Redis keys."""
    return hashlib.sha256(flavour_json.encode()).hexdigest()[:16]


def free_key(host: str, fid: str) -> str:
    """The set of claimable pool sandboxes of one flavour on a host."""
    return f"lab:pool:{host}:free:{fid}"


def _demand_key(host: str, minute: int) -> str:
    return f"lab:pool:{host}:demand:{minute}"


def pool_note_start(r, *, host: str, flavour_json: str, window_minutes: int) -> None:
    """Count a start on this host (demand, by flavour, per minute) for the pool's size."""
    fid = flavour_id(flavour_json)
    key = _demand_key(host, int(time.time() // 60))
    with r.pipeline(transaction=False) as p:
        p.hincrby(key, fid, 1)
        p.expire(key, window_minutes * 60 + 60)
        p.hsetnx(FLAVOURS, fid, flavour_json)
        p.execute()


def pool_claim(r, *, host: str, flavour_json: str) -> str | None:
    """Take a ready sandbox of this flavour out of the host's pool (atomically: one
    caller gets each), or None when it has none."""
    sid = r.spop(free_key(host, flavour_id(flavour_json)))
    return sid.decode() if sid else None


def pool_claimable(r, *, hosts: list[str], flavour_json: str) -> dict[str, int]:
    """Host -> ready pool sandboxes of this flavour."""
    fid = flavour_id(flavour_json)
    with r.pipeline(transaction=False) as p:
        for host in hosts:
            p.scard(free_key(host, fid))
        return dict(zip(hosts, p.execute()))


def pool_target(r, *, host: str, window_minutes: int, floor: int, most: int) -> tuple[str | None, int]:
    """(flavour JSON, size) the host's pool should hold: the flavour started most in the
    window, as many as its busiest two minutes in a row saw (a class arriving at once,
    whichever side of a minute it falls), within [floor, most]. (None, 0) with no
    demand and no floor."""
    if most <= 0:
        return None, 0
    now = int(time.time() // 60)
    buckets = r.pipeline(transaction=False)
    for m in range(now - window_minutes + 1, now + 1):
        buckets.hgetall(_demand_key(host, m))
    totals: dict[str, int] = {}
    peaks: dict[str, int] = {}
    previous: dict[str, int] = {}
    for bucket in buckets.execute():
        counts = {fid.decode(): int(n) for fid, n in bucket.items()}
        for fid, n in counts.items():
            totals[fid] = totals.get(fid, 0) + n
            peaks[fid] = max(peaks.get(fid, 0), n + previous.get(fid, 0))
        previous = counts
    if not totals:
        fid = r.get(f"lab:pool:{host}:last")  # the floor keeps the last flavour used
        fid = fid.decode() if fid else None
    else:
        fid = max(totals, key=lambda f: (totals[f], f))
        r.set(f"lab:pool:{host}:last", fid)
    if fid is None:
        return None, 0
    spec = r.hget(FLAVOURS, fid)
    if spec is None:
        return None, 0
    return spec.decode(), max(floor, min(most, peaks.get(fid, 0)))


def pool_members(cfg: HostConfig) -> dict[str, str]:
    """Sandbox id -> flavour id of every unassigned pool sandbox on this host (by marker)."""
    found = {}
    if not cfg.sessions_dir.is_dir():
        return found
    for d in cfg.sessions_dir.iterdir():
        try:
            found[d.name] = json.loads((d / MARKER).read_text())["fid"]
        except (OSError, ValueError, KeyError):
            continue
    return found


def pool_fill_one(cfg: HostConfig, r, *, flavour_json: str, new_id: Callable[[], str],
                  hostname: Callable[[str], str]) -> str:
    """Start one sandbox of the flavour and make it claimable; returns its id. Its uid
    range, overlay, cgroup and terminal are made now, as by any start."""
    from sandbox.service import SandboxRequest, layout_for, sandbox_start, sandbox_stop

    spec = json.loads(flavour_json)
    fid = flavour_id(flavour_json)
    sid = new_id()
    sandbox_start(cfg, SandboxRequest(sid=sid, image=spec["image"], hostname=hostname(sid),
                                      limits=Limits(**spec["limits"]), pooled=True))
    try:
        marker = layout_for(cfg, sid).root / MARKER
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps({"fid": fid, "at": time.time()}))
        os.replace(tmp, marker)  # claimable only once the marker is whole
        r.sadd(free_key(cfg.host, fid), sid)
    except BaseException:
        sandbox_stop(cfg, sid)
        raise
    return sid


def pool_take(cfg: HostConfig, sid: str, *, flavour_json: str, cols: int, rows: int) -> bool:
    """Assign the pool sandbox `sid` (claimed by the web for this session): True when it
    is one, of this flavour, alive, and now sized and recording as a fresh start; False
    when there is no such pool sandbox (the caller then starts afresh)."""
    from sandbox.service import layout_for

    marker = layout_for(cfg, sid).root / MARKER
    try:
        fid = json.loads(marker.read_text())["fid"]
        os.unlink(marker)  # whoever removes the marker owns the sandbox: it is never taken twice
    except (OSError, ValueError, KeyError):
        return False  # not a pool sandbox: the ordinary case of a fresh start
    from sandbox.service import sandbox_stop

    if fid != flavour_id(flavour_json):
        log.info("pool sandbox %s is of another flavour: starting afresh", sid)
        sandbox_stop(cfg, sid)
        return False
    try:
        relay_call(cfg, "assign", sid=sid, cols=cols, rows=rows, timeout=10)
    except Exception as exc:  # its shell died, or a relay restart swept it
        log.warning("pool sandbox %s could not be assigned (%s): starting afresh", sid, exc)
        sandbox_stop(cfg, sid)
        return False
    return True


def pool_trim(cfg: HostConfig, r, *, flavour_json: str | None, size: int, is_session: Callable[[str], bool],
              grace: float = 120.0) -> tuple[int, list[str]]:
    """Stop pool sandboxes beyond `size`, of another flavour, dead, or claimed by no
    session (a web process that died between its claim and its commit); returns (ready
    sandboxes of the flavour left, ids stopped)."""
    from sandbox.service import sandbox_stop

    keep_fid = flavour_id(flavour_json) if flavour_json else None
    members = pool_members(cfg)
    alive = set(relay_call(cfg, "list", timeout=10)["sessions"])
    stopped: list[str] = []
    ready = 0
    for sid, fid in sorted(members.items()):
        listed = bool(r.sismember(free_key(cfg.host, fid), sid))
        if not listed:
            # Claimed: its start task takes it (removing the marker) within seconds; one
            # claimed long ago by no session is an orphan.
            try:
                age = time.time() - json.loads((cfg.sessions_dir / sid / MARKER).read_text())["at"]
            except (OSError, ValueError, KeyError):
                continue
            if age > grace and not is_session(sid):
                stopped.append(sid)
                sandbox_stop(cfg, sid)
            continue
        if fid == keep_fid and sid in alive and ready < size:
            ready += 1
            continue
        if r.srem(free_key(cfg.host, fid), sid):  # still ours to stop: nobody claimed it meanwhile
            stopped.append(sid)
            sandbox_stop(cfg, sid)
    return ready, stopped


def pool_forget(r, *, host: str) -> None:
    """Drop the host's claimable sets: its relay restarted and swept every pool sandbox."""
    keys = list(r.scan_iter(match=f"lab:pool:{host}:free:*", count=100))
    if keys:
        r.delete(*keys)
