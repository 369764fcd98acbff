"""Per-session uid ranges (issue 13 item 2): every live sandbox maps root to a host range
of its own, the shared layers are idmapped into it (not copied), and ranges are freed
only once nothing of their owner is left. Real runc sandboxes; the allocator also alone."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import IS_ROOT, wait_for
from tests.sandbox.conftest import escape_install_probe

pytestmark = [pytest.mark.sandbox, pytest.mark.django_db(transaction=True)]
needs_root = pytest.mark.skipif(not IS_ROOT, reason="sandboxes and setuid need root")
ETOOMANYREFS = 109


def host_ids(pid: int) -> tuple[int, int]:
    """(uid, gid) of a host process as the host sees it, from /proc/<pid>/status."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    uid = next(line for line in status if line.startswith("Uid:")).split()[1]
    gid = next(line for line in status if line.startswith("Gid:")).split()[1]
    return int(uid), int(gid)


def as_host_uid(uid: int, code: str) -> str:
    """Run Python code on the host as uid/gid `uid` (no groups); its stdout."""
    proc = subprocess.run(["/usr/bin/python3", "-c", code], user=uid, group=uid, extra_groups=[],
                          capture_output=True, text=True, timeout=30, cwd="/")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


# --- the allocator alone --------------------------------------------------------


def test_ranges_are_distinct_stable_per_owner_and_refused_when_all_are_taken(tmp_path):
    from sandbox.exceptions import SandboxError
    from sandbox.uidranges import UidRanges

    ranges = UidRanges(first=2**24, slots=3, state_dir=tmp_path)
    a, b = ranges.allocate("h/a"), ranges.allocate("h/b")
    assert a.base != b.base and {a.base, b.base} <= {2**24, 2**24 + 65536, 2**24 + 2 * 65536}
    assert ranges.allocate("h/a") == a  # a retried start keeps its range
    ranges.allocate("h/c")
    with pytest.raises(SandboxError, match="No free uid range"):
        ranges.allocate("h/d")
    assert ranges.release("h/b") is True
    assert ranges.owned("h/b") is None
    assert ranges.allocate("h/d").base == b.base  # the only free one
    assert ranges.usage() == {"live": 3, "quarantine": 0, "free": 0}


def test_a_freed_range_rests_before_it_is_reused_unless_none_other_is_free(tmp_path):
    from sandbox.uidranges import UidRanges

    resting = UidRanges(first=2**24, slots=3, state_dir=tmp_path)
    a = resting.allocate("h/a")
    resting.release("h/a")
    assert resting.allocate("h/b") != a  # a has not rested: a never-used one
    rested = UidRanges(first=2**24, slots=3, state_dir=tmp_path, rest=0)
    assert rested.allocate("h/c") == a  # rested (pinned namespace warm): before a never-used one


def test_a_full_machine_takes_back_the_range_of_a_host_that_never_came_back(tmp_path, monkeypatch):
    from sandbox import uidranges
    from sandbox.uidranges import UidRanges

    ranges = UidRanges(first=2**24, slots=2, state_dir=tmp_path)
    home = tmp_path / "sessions" / "gone"
    home.mkdir(parents=True)
    lost = ranges.allocate("crashed-host/gone", home=home)
    ranges.allocate("h/kept", home=tmp_path)
    home.rmdir()  # its session directory is gone; its host never reconciles
    monkeypatch.setattr(uidranges, "ORPHAN_AFTER", 0.0)
    assert ranges.allocate("h/new") == lost
    with pytest.raises(Exception, match="No free uid range"):
        ranges.allocate("h/newer")  # h/kept's home exists: never taken


def test_a_pool_hands_its_range_over_to_a_session(tmp_path):
    from sandbox.uidranges import UidRanges

    ranges = UidRanges(first=2**24, slots=2, state_dir=tmp_path)
    pooled = ranges.allocate("h/pool-1")
    assert ranges.transfer("h/pool-1", "h/session1") == pooled
    assert ranges.owned("h/pool-1") is None and ranges.owned("h/session1") == pooled
    assert ranges.recover(host="h", keep={"session1"}) == []  # kept: the session lives


def test_the_least_recently_freed_range_is_reused_first(tmp_path):
    from sandbox.uidranges import UidRanges

    ranges = UidRanges(first=2**24, slots=3, state_dir=tmp_path)
    got = [ranges.allocate(f"h/{n}") for n in "abc"]
    ranges.release("h/b")
    ranges.release("h/a")
    assert ranges.allocate("h/d") == got[1]  # b rested longer than a
    assert ranges.allocate("h/e") == got[0]


@needs_root
def test_a_range_with_a_process_left_stays_in_quarantine_until_it_is_gone(tmp_path):
    from sandbox.uidranges import UidRanges

    ranges = UidRanges(first=2**24, slots=2, state_dir=tmp_path)
    mine = ranges.allocate("h/a")
    left = subprocess.Popen(["sleep", "60"], user=mine.base + 1000, group=mine.base, extra_groups=[])
    try:
        wait_for(lambda: host_ids(left.pid)[0] == mine.base + 1000, timeout=10, what="setuid sleep")
        assert ranges.release("h/a") is False
        assert ranges.usage()["quarantine"] == 1
        other = ranges.allocate("h/b")
        assert other != mine
        with pytest.raises(Exception, match="No free uid range"):
            ranges.allocate("h/c")  # the quarantined one is not handed out
    finally:
        left.kill()
        left.wait()
    # A crashed host's reconcile (or the next release) frees it once nothing is left.
    assert ranges.recover(host="h", keep={"b"}) == ["h/a"]
    assert ranges.allocate("h/c") == mine


# --- live sandboxes ---------------------------------------------------------------


@needs_root
def test_two_sandboxes_run_as_different_host_uid_ranges(escape_sandbox_factory):
    from labs.hostconfig import host_config

    cfg = host_config()
    a, b = escape_sandbox_factory(), escape_sandbox_factory()
    ua, ub = host_ids(a.pid), host_ids(b.pid)
    assert ua[0] != ub[0] and ua == (a.layout.session_ids(),) * 2 and ub == (b.layout.session_ids(),) * 2
    for uid in (ua[0], ub[0]):
        assert uid >= cfg.range_first and (uid - cfg.range_first) % cfg.id_count == 0
        assert uid != settings.LAB_SANDBOX_UID
    assert abs(ua[0] - ub[0]) >= cfg.id_count  # whole ranges apart, not overlapping
    # Inside, both are plain root over their own map.
    assert a.sh("cat /proc/self/uid_map").output.split() == ["0", str(ua[0]), "65536"]
    assert a.sh("id -u").output.strip() == b.sh("id -u").output.strip() == "0"


@needs_root
def test_a_file_made_in_a_sandbox_is_owned_by_its_range_on_the_host(escape_sandbox_factory):
    a, b = escape_sandbox_factory(), escape_sandbox_factory()
    assert a.sh("echo a > /tmp/f && mkdir -p /srv && echo a > /srv/f && chown 1000:1000 /srv/f").exit_code == 0
    base = a.layout.session_ids()
    assert os.stat(a.layout.tmp / "f").st_uid == base
    st = os.stat(a.layout.upper / "srv" / "f")
    assert (st.st_uid, st.st_gid) == (base + 1000, base + 1000)
    # The scratch tmpfs and the volumes belong to the range too.
    for d in (a.layout.upper, a.layout.work, a.layout.home, a.layout.tmp):
        assert os.stat(d).st_uid == base
    assert os.stat(b.layout.upper).st_uid == b.layout.session_ids() != base


@needs_root
def test_the_layers_are_shared_not_copied_and_seen_owned_by_each_range(escape_sandbox_factory, base_image):
    a, b = escape_sandbox_factory(), escape_sandbox_factory()
    stored = base_image.layer_dirs[0] / "bin" / "busybox"
    seen = [os.stat(box.layout.lowers / "0" / "bin" / "busybox") for box in (a, b)]
    orig = os.stat(stored)
    # Same inode on the same device: one file on disk, two views of its owner.
    assert {(s.st_dev, s.st_ino) for s in seen} == {(orig.st_dev, orig.st_ino)}
    assert orig.st_uid == settings.LAB_SANDBOX_UID
    assert [s.st_uid for s in seen] == [a.layout.session_ids(), b.layout.session_ids()]
    # The overlay's lowerdirs are those idmapped mounts, read-only.
    mountinfo = Path(f"/proc/{a.pid}/mountinfo").read_text()
    assert str(a.layout.lowers / "0") in Path("/proc/self/mountinfo").read_text()
    assert any(" / / " in line and "overlay" in line and str(a.layout.lowers) in line for line in mountinfo.splitlines())
    mine = [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if f" {a.layout.lowers}/0 " in line]
    assert mine and "idmapped" in mine[0] and " ro," in mine[0] + ","
    # Inside: root owns the image's files, the views too, and they stay read-only.
    assert a.sh("stat -c '%u %g' /bin/busybox /var/lib/lab/overlay2/*/diff/bin/busybox").output.split() == ["0"] * 4
    assert "Read-only" in a.sh("for d in /var/lib/lab/overlay2/*/diff; do touch $d/x; done 2>&1").output


@needs_root
def test_kill_minus_one_in_one_sandbox_does_not_touch_another(escape_sandbox_factory):
    a, b = escape_sandbox_factory(), escape_sandbox_factory()
    # From the host, A's uid may signal A's processes but not B's: with one shared range,
    # a process of any sandbox's uid could signal every other sandbox's processes.
    code = ("import os\n"
            "def k(p):\n try:\n  os.kill(p, 0); return 'ok'\n except PermissionError: return 'EPERM'\n"
            f"print(k({a.pid}), k({b.pid}))")
    assert as_host_uid(a.layout.session_ids(), code).split() == ["ok", "EPERM"]
    b.sh("sleep 600 >/dev/null 2>&1 &")
    before = b.sh("ps -o pid,comm").output
    a.sh("kill -9 -1; true")  # A's shell, and with it A's init, go
    assert b.sh("ps -o pid,comm").output.count("sleep") == before.count("sleep") == 1
    assert Path(f"/proc/{b.pid}").exists() and host_ids(b.pid)[0] == b.layout.session_ids()


@needs_root
def test_fds_in_flight_are_counted_per_range_not_shared(escape_sandbox_factory, escape_probe_binary):
    """The kernel counts SCM_RIGHTS fds in flight per host uid (user_struct.unix_inflight)
    against RLIMIT_NOFILE: one sandbox at that limit used to stop every other sandbox
    (same uid) from passing an fd at all."""
    from tests.sandbox.test_escape import hold

    a, b = escape_sandbox_factory(), escape_sandbox_factory()
    for box in (a, b):
        escape_install_probe(box, escape_probe_binary)
    assert hold(a, "ulimit -n 4096; probe scm 1000000", wait=2) >= 4096
    # A host process with A's uid is refused (the counter is that uid's, and it is full)…
    code = ("import array,errno,resource,socket\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4096))\n"  # as a sandbox's
            "x, y = socket.socketpair()\n"
            "try:\n x.sendmsg([b'x'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [x.fileno()]))]); print('sent')\n"
            "except OSError as e: print(e.errno)\n")
    assert as_host_uid(a.layout.session_ids(), code) == str(ETOOMANYREFS)
    # …while B, its own range, passes fds as usual.
    assert hold(b, "probe scm 300") >= 253


@needs_root
def test_a_checkpoint_layer_has_container_ids_not_the_sessions_range(escape_sandbox_factory):
    from labs.hostconfig import host_config
    from sandbox.images.store import ImageStore
    from sandbox.inside.checkpoint import upper_commit

    cfg = host_config()
    box = escape_sandbox_factory()
    assert box.sh("mkdir -p /srv/d && echo x > /srv/d/f && chown 1000:1001 /srv/d/f && rm /etc/motd").exit_code == 0
    ref = f"lab/uidmap-{box.sid}:cp"
    image, _ = upper_commit(cfg, box.layout, ref=ref, created_by="lab checkpoint test")
    store = ImageStore(cfg.images_dir, uid_base=cfg.uid_base, id_count=cfg.id_count)
    try:
        with tarfile.open(fileobj=store.open_uncompressed(image.layers[-1].digest), mode="r|") as tar:
            owners = {m.name.rstrip("/"): (m.uid, m.gid) for m in tar}
        assert owners["srv"] == owners["srv/d"] == (0, 0)
        assert owners["srv/d/f"] == (1000, 1001)
        assert "etc/.wh.motd" in owners
        # Unpacked in the store, it is owned by the store's range like every layer.
        assert os.stat(image.layer_dirs[-1] / "srv" / "d" / "f").st_uid == cfg.uid_base + 1000
        # A squash of checkpoint layers + upper (idmapped lowers and the upper, one range) works too.
        image2, _ = upper_commit(cfg, box.layout, ref=ref + "2", created_by="lab checkpoint test2", squash_at=1)
        with tarfile.open(fileobj=store.open_uncompressed(image2.layers[-1].digest), mode="r|") as tar:
            assert {m.name.rstrip("/"): m.uid for m in tar}["srv/d/f"] == 1000
    finally:
        for r in (ref, ref + "2"):
            try:
                store.remove(r)
            except Exception:
                pass


@needs_root
def test_volumes_kept_across_a_rewind_follow_the_new_range(escape_sandbox_factory, tmp_path):
    from sandbox.service import volumes_save

    a = escape_sandbox_factory()
    assert a.sh("echo kept > /root/keep && chown 1000:1000 /root/keep").exit_code == 0
    saved = tmp_path / "vols"
    volumes_save(a.cfg, a.sid, saved)
    # Nothing on disk keeps A's range once it is freed: saved in the store's range.
    assert os.stat(saved / "home" / "keep").st_uid == settings.LAB_SANDBOX_UID + 1000
    a.stop()
    from sandbox.runtime import Limits
    from sandbox.service import SandboxRequest, sandbox_start, sandbox_stop

    sid = secrets.token_hex(8)
    sandbox_start(a.cfg, SandboxRequest(sid=sid, image="lab/base:latest", hostname="rewound", limits=Limits(),
                                        volumes_from=str(saved)))
    try:
        from sandbox.service import layout_for, sandbox_exec

        layout = layout_for(a.cfg, sid)
        assert sandbox_exec(a.cfg, sid, "stat -c '%u %n' /root/keep; cat /root/keep").output.split() == ["1000", "/root/keep", "kept"]
        assert os.stat(layout.home / "keep").st_uid == layout.session_ids() + 1000
    finally:
        sandbox_stop(a.cfg, sid)


@needs_root
def test_a_range_is_freed_on_stop(escape_sandbox_factory):
    box = escape_sandbox_factory()
    ranges = box.cfg.uid_ranges()
    owner = f"{box.cfg.host}/{box.sid}"
    held = ranges.owned(owner)
    assert held is not None and held.base == box.layout.session_ids()
    box.stop()
    assert ranges.owned(owner) is None
    # Its pinned user namespace stays for the next start on that range, until the host's
    # next reconcile (or shutdown) unpins the free ones.
    pin = ranges.pins / f"{settings.LAB_SANDBOX_UID}-{held.base}-65536"
    assert str(pin) in Path("/proc/self/mountinfo").read_text()
    ranges.recover(host=box.cfg.host, keep=set())
    assert str(pin) not in Path("/proc/self/mountinfo").read_text() and not pin.exists()


@needs_root
def test_ranges_of_a_killed_host_are_recovered_when_it_comes_back(worker):
    from labs.hostconfig import host_config
    from sandbox.runtime import Limits
    from sandbox.service import SandboxRequest, sandbox_start

    cfg = host_config()
    ranges = cfg.uid_ranges()
    sid = secrets.token_hex(8)
    pid = sandbox_start(cfg, SandboxRequest(sid=sid, image="lab/base:latest", hostname="crash", limits=Limits()))
    owner = f"{cfg.host}/{sid}"
    held = ranges.owned(owner)
    assert held is not None and host_ids(pid)[0] == held.base
    worker.stop(signal.SIGKILL)  # worker, holder and relay die at once; nobody releases anything
    assert ranges.owned(owner) == held
    worker.restart()  # the new relay reconciles: the sandbox is swept, its range freed
    wait_for(lambda: ranges.owned(owner) is None, timeout=60, what="the crashed sandbox's range freed")
    assert not Path(f"/proc/{pid}").exists() or host_ids(pid)[0] != held.base


def test_capacity_is_at_most_the_number_of_ranges(settings):
    from labs.hostconfig import host_config

    settings.LAB_SANDBOX_RANGES = 3
    settings.LAB_HOST_CAPACITY = 0
    assert host_config().capacity <= 3
    settings.LAB_HOST_CAPACITY = 50
    assert host_config().capacity == 3
    settings.LAB_SANDBOX_RANGES = 0  # the shared range: capacity as before
    assert host_config().capacity == 50 and host_config().uid_ranges() is None
