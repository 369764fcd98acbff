"""Resource limits of a live sandbox: memory, pids, disk and cpu hold against a hostile
trainee, the sandbox survives its own excess, and the host and other sandboxes do not
notice."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.conftest import IS_ROOT, wait_for

pytestmark = [pytest.mark.root, pytest.mark.sandbox, pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
              pytest.mark.django_db(transaction=True)]


def cgroup(box, controller: str) -> Path:
    """The sandbox's cgroup directory on the host for one v1 controller."""
    return Path("/sys/fs/cgroup") / controller / box.cfg.cgroup_parent.strip("/") / box.sid


def test_memory_hog_is_oom_killed_and_the_sandbox_lives_on(escape_sandbox_factory):
    box = escape_sandbox_factory(memory_mb=32)
    memory = cgroup(box, "memory")
    assert int((memory / "memory.limit_in_bytes").read_text()) == 32 * 2**20
    # No swap to escape into: memory + swap is the same limit.
    assert int((memory / "memory.memsw.limit_in_bytes").read_text()) == 32 * 2**20
    hog = box.sh("tail /dev/zero; echo rc=$?", timeout=15)
    assert "rc=137" in hog.output, hog.output  # SIGKILL from the OOM killer
    assert "oom_kill 1" in (memory / "memory.oom_control").read_text()
    # The shell of the terminal (tini's child) is still there, and exec still answers.
    assert box.sh("echo alive; ps -o comm | grep -c '^sh'").output.split()[0] == "alive"
    assert box.sh("kill -0 1 && pidof sh >/dev/null && echo shell-up").output.strip() == "shell-up"


def test_fork_bomb_is_contained_and_cleaned_up(escape_sandbox_factory):
    box = escape_sandbox_factory(pids=48)
    pids = cgroup(box, "pids")
    assert (pids / "pids.max").read_text().strip() == "48"
    box.sh("(b() { b | b & }; b) >/dev/null 2>&1 &")
    wait_for(lambda: int((pids / "pids.events").read_text().split()[1]) > 0, timeout=10, what="pids.max reached")
    assert int((pids / "pids.current").read_text()) <= 48
    started = time.monotonic()
    box.stop()
    assert time.monotonic() - started < 10
    assert not pids.exists()
    # Another sandbox still starts at once and works.
    started = time.monotonic()
    other = escape_sandbox_factory()
    assert other.sh("echo fine").output.strip() == "fine"
    assert time.monotonic() - started < 5


def test_disk_fills_at_disk_mb_with_enospc(escape_sandbox_factory):
    box = escape_sandbox_factory(disk_mb=16)
    out = box.sh("dd if=/dev/zero of=/root/big bs=1M count=64 2>&1; ls -l /root/big", timeout=15).output
    assert "No space left on device" in out, out
    size = int(out.split()[-5])
    assert 12 * 2**20 <= size <= 16 * 2**20
    # The bytes are on the session's own tmpfs, not on the host's disk: /root is a volume on it.
    big = box.layout.home / "big"
    assert big.stat().st_dev == box.layout.scratch.stat().st_dev != Path(box.cfg.data_dir).stat().st_dev
    st = os.statvfs(box.layout.scratch)
    assert st.f_bavail * st.f_frsize < 2**20
    # One cap for the volumes and the container layer: the root file system is full too.
    assert "No space left on device" in box.sh("dd if=/dev/zero of=/srv.big bs=1M count=4 2>&1").output
    assert box.sh("rm /root/big && echo freed").output.strip() == "freed"


def test_cpu_quota_is_in_the_cgroup(escape_sandbox_factory):
    box = escape_sandbox_factory(cpu=0.5)
    cpu = cgroup(box, "cpu")
    assert (cpu / "cpu.cfs_period_us").read_text().strip() == "100000"
    assert (cpu / "cpu.cfs_quota_us").read_text().strip() == "50000"
    # The sandbox's processes are the ones in it.
    tasks = {int(p) for p in (cpu / "cgroup.procs").read_text().split()}
    assert box.pid in tasks
