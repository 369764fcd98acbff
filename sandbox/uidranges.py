"""Host uid/gid ranges, one per live sandbox: root in a sandbox is `base`, its 65536 ids
are `base`…`base+65535` on the host, and no other live sandbox has them. Per-uid kernel
accounting (pipe pages, fds in flight, RLIMIT_NPROC, keys), signals and file ownership
then separate sandboxes from each other.

Ranges are slots `first + i × count` (i < slots), recorded machine-wide in one JSON
file under a lock (`/run/container-lab/uidranges`, shared by every host on the machine,
gone with the processes and tmpfs at reboot): `allocate(owner)` at start,
`release(owner)` at stop, `recover(host, keep)` when a host reconciles after a crash.
A range is free again only once nothing of its owner is left: `release` looks for any
process running as the range (see range_processes) and, if one is left,
keeps the range in quarantine until a later `release`/`recover` finds none. Reuse is
least recently freed first, once it rested 10 s (never-used ranges before that).

An owner is "<host>/<session id>"; a warm pool allocates at pool creation with its own
owner names and hands the range to the session with the sandbox.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sandbox.exceptions import SandboxError
from sandbox.mounts import unmount

STATE_DIR = Path("/run/container-lab/uidranges")
LIVE, QUARANTINE, FREE = "live", "quarantine", "free"
# Seconds between looks at /proc while a released range's processes die (3 s in all).
SETTLE_PAUSES = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5)
# A freed range that rested this long is taken before a never-used one: its idmapping
# user namespace is pinned already (a first use forks one, ~20 ms in a worker).
REST = 10.0
# A live range whose owner's session directory is gone this long after it was allocated
# is an orphan (its host crashed and never reconciled): a full machine takes it back.
ORPHAN_AFTER = 60.0


@dataclass(frozen=True)
class UidRange:
    """One host range: sandbox id n is host id base + n."""

    base: int
    count: int = 65536

    def __contains__(self, host_id: int) -> bool:
        return self.base <= host_id < self.base + self.count


def range_processes(ranges: list[UidRange]) -> dict[int, list[int]]:
    """base -> host pids of processes of that range. A process's /proc/<pid> is owned
    by its effective uid/gid, or, when it is not dumpable, by the root of its user
    namespace (the range's base for a sandbox's): one stat per process, where reading
    every /proc/<pid>/status would cost ten times more on a host of thousands."""
    found: dict[int, list[int]] = {}
    if not ranges:
        return found
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{name}")
        except OSError:
            continue  # gone meanwhile
        for r in ranges:
            if st.st_uid in r or st.st_gid in r:
                found.setdefault(r.base, []).append(int(name))
    return found


class UidRanges:
    """The machine's ranges: allocate, release, recover (see the module docstring)."""

    def __init__(self, *, first: int, slots: int, count: int = 65536, state_dir: Path = STATE_DIR,
                 rest: float = REST) -> None:
        if first < count or first % count or slots < 1 or first + slots * count > 2**32 - 2:
            raise SandboxError(f"uid ranges {first} + {slots} x {count}: must start on a multiple of {count}, "
                               "above the first range, and end below 2^32")
        self.first, self.slots, self.count = first, slots, count
        self.state_dir = Path(state_dir)
        self.rest = rest

    @property
    def pins(self) -> Path:
        """Where each range's idmapping user namespace is kept (sandbox/idmap.py)."""
        return self.state_dir / "userns"

    # -- the state file, read and written under one lock ---------------------------
    @contextmanager
    def _state(self) -> Iterator[dict[str, dict]]:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.state_dir / "lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = self.state_dir / "ranges.json"
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                state = {}
            before = json.dumps(state, sort_keys=True)
            yield state
            if json.dumps(state, sort_keys=True) != before:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(state, sort_keys=True))
                os.replace(tmp, path)

    def _mine(self, base: int) -> bool:
        return self.first <= base < self.first + self.slots * self.count and (base - self.first) % self.count == 0

    # -- the API -----------------------------------------------------------------
    def allocate(self, owner: str, *, home: Path | None = None) -> UidRange:
        """The owner's range: the one it holds already, else a free one: the least
        recently freed if it rested `rest` seconds, else a never-used one, else the least
        recently freed; SandboxError when all are taken. `home` is the owner's session
        directory: a full machine takes back a range whose home is gone and whose
        processes are too (its host crashed and never came back to recover it)."""
        with self._state() as state:
            for base, rec in state.items():
                if rec["owner"] == owner and rec["state"] == LIVE and self._mine(int(base)):
                    return UidRange(int(base), self.count)
            freed = sorted((r["since"], int(b)) for b, r in state.items() if r["state"] == FREE and self._mine(int(b)))
            unused = next((b for b in (self.first + i * self.count for i in range(self.slots)) if str(b) not in state), None)
            best: tuple[float, int] | None = None
            if freed and (unused is None or freed[0][0] <= time.time() - self.rest):
                best = freed[0]
            elif unused is not None:
                best = (0.0, unused)
            if best is None:
                best = self._rescued(state)
            if best is None:
                raise SandboxError(f"没有空闲的 uid 范围（{self.slots} 个都在用）。No free uid range: all "
                                   f"{self.slots} are in use or in quarantine (LAB_SANDBOX_RANGES).")
            state[str(best[1])] = {"owner": owner, "state": LIVE, "since": time.time(),
                                   **({"home": str(home)} if home else {})}
            return UidRange(best[1], self.count)

    def _quarantined(self, state: dict[str, dict]) -> dict[int, str]:
        return {int(b): r["owner"] for b, r in state.items() if r["state"] == QUARANTINE and self._mine(int(b))}

    def _rescued(self, state: dict[str, dict]) -> tuple[float, int] | None:
        """All taken: a quarantined range whose processes are gone by now, or a live one
        whose owner's home is gone (a minute after it was allocated), if any (one look at
        /proc, under the lock: this happens only when the machine is full)."""
        candidates = self._quarantined(state)
        for b, r in state.items():
            if (r["state"] == LIVE and r.get("home") and time.time() - r["since"] > ORPHAN_AFTER
                    and self._mine(int(b)) and not os.path.exists(r["home"])):
                candidates[int(b)] = r["owner"]
        busy = range_processes([UidRange(b, self.count) for b in candidates])
        free = sorted(b for b in candidates if b not in busy)
        return (0.0, free[0]) if free else None

    def transfer(self, owner: str, new_owner: str) -> UidRange:
        """Hand a live range to another owner (a warm pool's sandbox given to a session)."""
        with self._state() as state:
            for base, rec in state.items():
                if rec["owner"] == owner and rec["state"] == LIVE and self._mine(int(base)):
                    rec["owner"] = new_owner
                    return UidRange(int(base), self.count)
        raise SandboxError(f"{owner} holds no uid range to hand over")

    def owned(self, owner: str) -> UidRange | None:
        """The range the owner holds (live or in quarantine), if any."""
        with self._state() as state:
            for base, rec in state.items():
                if rec["owner"] == owner and rec["state"] != FREE and self._mine(int(base)):
                    return UidRange(int(base), self.count)
        return None

    def release(self, owner: str) -> bool:
        """Free the owner's range once no process of it is left (True), else keep it in
        quarantine (False) for a later release or recover. Call it after the sandbox's
        container is deleted and its tmpfs unmounted."""
        held = self.owned(owner)
        # Ranges left in quarantine by earlier stops are looked at again in the same scan.
        with self._state() as state:
            wanted = self._quarantined(state)
        if held is not None:
            wanted[held.base] = owner
        settled = self._settle(wanted)
        return True if held is None else settled[held.base]

    def recover(self, *, host: str, keep: set[str]) -> list[str]:
        """After a crash: the ranges of `host` whose session is not in `keep` (session
        ids) are released as `release` would; returns the owners freed."""
        with self._state() as state:
            stale = {int(b): r["owner"] for b, r in state.items()
                     if r["state"] != FREE and r["owner"].startswith(f"{host}/")
                     and r["owner"].split("/", 1)[1] not in keep and self._mine(int(b))}
        freed = self._settle(stale)
        self.unpin_free()
        return sorted(stale[b] for b, ok in freed.items() if ok)

    def unpin_free(self) -> int:
        """Unmount the pinned user namespaces of free ranges (a host shutting down or
        reconciling leaves only the live ones' pins); how many went."""
        with self._state() as state:
            keep = {str(b) for b, r in state.items() if r["state"] != FREE}
        gone = 0
        if not self.pins.is_dir():
            return 0
        for pin in self.pins.iterdir():
            base = pin.name.split("-")[1] if pin.name.count("-") == 2 else ""
            if base in keep:
                continue
            unmount(pin)
            try:
                pin.unlink()
                gone += 1
            except OSError:
                pass  # still mounted (a start opening it right now): the next time
        return gone

    def _settle(self, wanted: dict[int, str]) -> dict[int, bool]:
        """Free each range whose owner is still `wanted[base]` and no process uses it."""
        if not wanted:
            return {}
        # Outside the lock: it reads /proc. Processes just killed (a container deleted
        # a moment ago, zombies not reaped yet) get a few seconds to go.
        busy = range_processes([UidRange(b, self.count) for b in wanted])
        for pause in SETTLE_PAUSES:
            if not busy:
                break
            time.sleep(pause)
            busy = range_processes([UidRange(b, self.count) for b in busy])
        out = {}
        with self._state() as state:
            now = time.time()
            for base, owner in wanted.items():
                rec = state.get(str(base))
                if rec is None or rec["owner"] != owner:
                    out[base] = True
                    continue
                free = base not in busy
                rec.update(state=FREE if free else QUARANTINE, since=now)
                if not free:
                    rec["pids"] = busy[base][:8]
                else:
                    rec.pop("pids", None)
                out[base] = free
        return out

    def usage(self) -> dict[str, int]:
        """How many ranges are live, in quarantine, free (never used counts as free)."""
        with self._state() as state:
            mine = [r for b, r in state.items() if self._mine(int(b))]
        live = sum(r["state"] == LIVE for r in mine)
        quarantine = sum(r["state"] == QUARANTINE for r in mine)
        return {"live": live, "quarantine": quarantine, "free": self.slots - live - quarantine}
