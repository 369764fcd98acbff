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


def tcp_mem_pages() -> int:
    """Pages of TCP buffers on the whole host (the host-global tcp_mem counter)."""
    line = next(l for l in Path("/proc/net/sockstat").read_text().splitlines() if l.startswith("TCP:"))
    return int(line.split("mem")[1].split()[0])


def test_socket_buffers_are_charged_to_the_sandbox(escape_sandbox_factory, escape_probe_binary):
    from tests.sandbox.conftest import escape_install_probe

    box = escape_sandbox_factory(memory_mb=128)
    escape_install_probe(box, escape_probe_binary)
    memory = cgroup(box, "memory")
    limit = int((memory / "memory.kmem.tcp.limit_in_bytes").read_text())
    assert limit == 32 * 2**20  # a quarter of memory_mb, at most 32 MiB
    before = tcp_mem_pages()
    # 400 loopback connections whose peer never reads: unlimited, this held 600+ MiB
    # of the host-wide tcp_mem (which, exhausted, starves Redis and the web server).
    out = box.sh("ulimit -n 4096; probe tcp 400 > /tmp/tcp.out & "
                 "while [ ! -s /tmp/tcp.out ]; do sleep 0.2; done; cat /tmp/tcp.out", timeout=60).output
    queued_kib = int(out.split()[0])
    used = int((memory / "memory.kmem.tcp.max_usage_in_bytes").read_text())
    # Past the limit each socket still gets its first buffer (the kernel forces one skb).
    assert used <= limit + 400 * 128 * 1024, (used, limit)
    assert queued_kib * 1024 <= limit + 400 * 128 * 1024
    assert (tcp_mem_pages() - before) * 4096 < 150 * 2**20
    # Another sandbox's TCP works, and so does the host's.
    other = escape_sandbox_factory()
    # Conditions, not sleeps: the listener is up (port 8080 = 1F90 in LISTEN, 0A), then the bytes arrived.
    res = other.sh("(nc -l -p 8080 > /tmp/got &) ; "
                   "while ! grep -qE ':1F90 0+:0000 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null; do sleep 0.05; done; "
                   "echo hello | nc 127.0.0.1 8080; while [ ! -s /tmp/got ]; do sleep 0.05; done; cat /tmp/got",
                   timeout=30)
    assert "hello" in res.output, res.output
    import socket

    srv = socket.create_server(("127.0.0.1", 0))
    with srv, socket.create_connection(srv.getsockname()) as c:
        conn, _ = srv.accept()
        with conn:
            c.sendall(b"x" * 65536)
            assert len(conn.recv(65536)) > 0


def parent(box, controller: str) -> Path:
    return Path("/sys/fs/cgroup") / controller / box.cfg.cgroup_parent.strip("/")


def test_the_hosts_sandbox_parent_cgroup_caps_the_sum_and_capacity_follows_the_host(escape_sandbox_factory, worker):
    import json

    import redis
    from django.conf import settings

    from sandbox.quotas import host_budget

    box = escape_sandbox_factory(pids=48)
    budget = host_budget()
    total = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1]) * 1024
    assert 0 < budget.memory_bytes <= total - 2 * 2**30
    assert budget.pids == int(Path("/proc/sys/kernel/pid_max").read_text()) // 2 or budget.pids < 2**21
    assert int((parent(box, "memory") / "memory.limit_in_bytes").read_text()) == budget.memory_bytes
    assert int((parent(box, "memory") / "memory.kmem.tcp.limit_in_bytes").read_text()) == budget.tcp_bytes
    assert int((parent(box, "pids") / "pids.max").read_text()) == budget.pids
    # Capacity is the host's, not a fixed 200 (the test settings leave LAB_HOST_CAPACITY unset).
    beat = json.loads(redis.Redis.from_url(settings.REDIS_URL).get(f"lab:host:{box.cfg.host}"))
    assert beat["capacity"] == budget.capacity == box.cfg.capacity
    assert budget.capacity == min(budget.memory_bytes // (64 * 2**20), budget.pids // 16)
    # The sum is capped: two fork bombs under a parent whose pids.max is lowered to 64
    # (as a host whose sandboxes are at their budget) stay within it together.
    other = escape_sandbox_factory(pids=48)
    pids_max = parent(box, "pids") / "pids.max"
    pids_max.write_text("64")
    try:
        for b in (box, other):
            # Processes that stay: each sandbox takes every pid it is allowed.
            b.sh("(while :; do sleep 300 & done) >/dev/null 2>&1 &")
        current = parent(box, "pids") / "pids.current"
        wait_for(lambda: int(current.read_text()) >= 60, timeout=15, what="the parent near its pids.max")
        for _ in range(20):
            assert int(current.read_text()) <= 64
        # Each alone could have 48: together they have at most 64, not 96.
        assert int((cgroup(box, "pids") / "pids.current").read_text()) + int(
            (cgroup(other, "pids") / "pids.current").read_text()) <= 64
        assert os.fork() or os._exit(0)  # host root still forks
        os.wait()
    finally:
        box.stop()
        other.stop()
        pids_max.write_text(str(budget.pids))
    assert escape_sandbox_factory().sh("echo next").output.strip() == "next"


def test_lab_limits_past_the_per_session_ranges_are_refused_and_clamped_at_start(tmp_path):
    from labs.labfile import load_lab
    from labs.labfile.spec import LabFileError
    from sandbox.runtime import LIMIT_RANGES, Limits

    lab = tmp_path / "greedy"
    lab.mkdir()
    (lab / "lab.yaml").write_text(
        "slug: greedy\ntitle: {zh-hans: 贪, en: Greedy}\nlimits: {memory_mb: 8192, pids: 4096, cpu: 8, disk_mb: 65536}\n"
        "steps:\n  - id: a\n    title: {zh-hans: a, en: a}\n    text: {zh-hans: a, en: a}\n")
    with pytest.raises(LabFileError) as err:
        load_lab(lab)
    text = str(err.value)
    for needle in ("memory_mb: 8192 is out of range (16 to 2048)", "pids: 4096 is out of range (8 to 512)",
                   "cpu: 8 is out of range (0.1 to 2)", "disk_mb: 65536 is out of range (8 to 2048)"):
        assert needle in text, text
    # A lab imported before the ranges tightened is clamped when a sandbox starts.
    clamped = Limits.from_lab({"memory_mb": 8192, "pids": 4096, "cpu": 8, "disk_mb": 65536})
    assert (clamped.memory_mb, clamped.pids, clamped.cpu, clamped.disk_mb) == tuple(
        LIMIT_RANGES[k][1] for k in ("memory_mb", "pids", "cpu", "disk_mb"))
