"""Many start/stop cycles leave nothing behind: containers, mounts, cgroups, session
directories, zombies, or PTY file descriptors in the relay."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from tests.conftest import IS_ROOT, zombies_under

pytestmark = [pytest.mark.root, pytest.mark.sandbox, pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
              pytest.mark.django_db(transaction=True)]
CYCLES = int(os.environ.get("LAB_TEST_CYCLES", "500"))


def pty_fds(pid: int) -> int:
    """PTY masters a process holds (what the relay would leak)."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        n += "ptmx" in target or "/dev/pts" in target
    return n


def leftovers(cfg, sids: set[str]) -> dict[str, list]:
    from sandbox.runtime import runc_list

    cgroups = []
    for controller in Path("/sys/fs/cgroup").iterdir():
        parent = controller / "container-lab" / cfg.host
        if parent.is_dir():
            cgroups += [p.name for p in parent.iterdir() if p.is_dir() and p.name in sids]
    return {
        "containers": [c["id"] for c in runc_list(cfg) if c["id"] in sids],
        "mounts": [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
                   if any(f"{cfg.sessions_dir}/{sid}" in line for sid in sids)],
        "cgroups": cgroups,
        "session_dirs": [p.name for p in cfg.sessions_dir.iterdir() if p.name in sids] if cfg.sessions_dir.exists() else [],
    }


def test_many_start_stop_cycles_leave_nothing_behind(worker):
    from labs.hostconfig import host_config
    from sandbox.runtime import Limits
    from sandbox.service import SandboxRequest, sandbox_exec, sandbox_start, sandbox_stop

    cfg = host_config()
    relay = worker.relay_pid
    ptys_before = pty_fds(relay)
    held_before = pty_fds(worker.holder.pid)
    sids = set()
    for i in range(CYCLES):
        sid = secrets.token_hex(8)
        sids.add(sid)
        sandbox_start(cfg, SandboxRequest(sid=sid, image="lab/base:latest", hostname="cycle", limits=Limits(memory_mb=64, pids=32, disk_mb=8)))
        if i == 0:
            assert pty_fds(relay) == ptys_before + 1  # the count below can see a PTY
            assert pty_fds(worker.holder.pid) == held_before + 1  # and the holder keeps a copy
        if i % 50 == 0:  # now and then, prove it is a working sandbox, with a child left running
            assert sandbox_exec(cfg, sid, "sleep 1000 & echo up", timeout=5).output.strip() == "up"
        sandbox_stop(cfg, sid)
    assert leftovers(cfg, sids) == {"containers": [], "mounts": [], "cgroups": [], "session_dirs": []}
    assert zombies_under(worker.holder.pid) == []  # the holder reaps container inits
    assert pty_fds(relay) == ptys_before  # no PTY master leaked
    assert pty_fds(worker.holder.pid) == held_before  # nor kept by the holder


def keys_of(low: int, high: int | None = None) -> int:
    """Keys the kernel charges to uids low..high (its quota per uid is kernel.keys.maxkeys,
    200 by default)."""
    high = low if high is None else high
    total = 0
    for line in Path("/proc/key-users").read_text().splitlines():
        owner, rest = line.split(":", 1)
        if low <= int(owner) <= high:
            total += int(rest.split()[0])
    return total


def test_sandboxes_do_not_use_up_the_sandbox_uids_key_quota(worker):
    """With a session keyring per container, 200 live sandboxes would exhaust the key
    quota of the sandbox uid and every further start would fail (EDQUOT)."""
    from django.conf import settings

    from labs.hostconfig import host_config
    from sandbox.runtime import Limits
    from sandbox.service import SandboxRequest, sandbox_start, sandbox_stop

    cfg = host_config()
    # Every sandbox root, whichever uid range it has.
    ids = (settings.LAB_SANDBOX_UID, cfg.range_first + cfg.ranges * cfg.id_count)
    before = keys_of(*ids)
    sids = [secrets.token_hex(8) for _ in range(5)]
    try:
        for sid in sids:
            sandbox_start(cfg, SandboxRequest(sid=sid, image="lab/base:latest", hostname="keys", limits=Limits()))
        assert keys_of(*ids) <= before
    finally:
        for sid in sids:
            sandbox_stop(cfg, sid)
