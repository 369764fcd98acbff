"""Escape attempts from inside a live sandbox, each run as root in there and each
asserting that the attack fails. docs/security.md maps every test to the layer that
stops it. Where an attack could succeed silently, the test also checks the host."""
from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
from django.conf import settings

from tests.conftest import IS_ROOT, ROOT
from tests.sandbox.conftest import escape_install_probe

pytestmark = [pytest.mark.root, pytest.mark.sandbox, pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
              pytest.mark.django_db(transaction=True)]
EPERM, ESRCH, ENOSYS = "-1", "-3", "-38"


def host_ipv4_addresses() -> list[str]:
    """Every IPv4 address of the host, loopback excluded."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    return [f.split()[3].split("/")[0] for f in out.splitlines() if " lo " not in f]


def redis_port() -> int:
    return urlparse(settings.REDIS_URL).port or 6379


def tree_digest(path: Path) -> str:
    """A digest of every name, size and content under path (to prove nothing changed)."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


# --- processes ---------------------------------------------------------------


def test_ps_shows_only_the_sandboxs_own_processes(escape_sandbox, worker):
    out = escape_sandbox.sh("ps -o pid,comm").output
    pids = [int(line.split()[0]) for line in out.splitlines()[1:]]
    assert pids and max(pids) < 100, out
    for host_name in ("celery", "python", "redis-server", "runc", "uvicorn"):
        assert host_name not in out
    assert worker.proc.pid not in pids


def test_host_processes_cannot_be_signalled_or_traced(escape_sandbox, escape_probe_binary, worker):
    escape_install_probe(escape_sandbox, escape_probe_binary)
    for pid in (worker.proc.pid, os.getpid(), 1 if os.getpid() != 1 else 2):
        # A guessed host pid is either another process of the sandbox or nothing at all.
        out = escape_sandbox.sh(f"probe kill {pid}; probe ptrace {pid}; kill -9 {pid} 2>&1").output.split()
        if pid > 100:
            assert out[:2] == [ESRCH, ESRCH], out
    assert worker.proc.poll() is None, "the worker was killed from inside a sandbox"


# --- files ---------------------------------------------------------------------


def test_host_files_are_out_of_reach(escape_sandbox):
    secret = secrets.token_hex(16)
    marker = Path(settings.LAB_DATA_DIR) / f"host-secret-{secret}"
    marker.write_text(secret)
    try:
        paths = [ROOT, ROOT / "manage.py", Path(settings.LAB_DATA_DIR), marker, escape_sandbox.layout.root]
        script = "; ".join(f"ls -d {p} /proc/1/root{p} 2>/dev/null" for p in paths)
        assert escape_sandbox.sh(script).output.strip() == ""
        # The sandbox's /etc/shadow is the image's, not the host's.
        host_root_hash = Path("/etc/shadow").read_text().splitlines()[0]
        assert host_root_hash not in escape_sandbox.sh("cat /etc/shadow 2>&1").output
        found = escape_sandbox.sh(f"grep -rl {secret} / --exclude-dir=proc --exclude-dir=sys 2>/dev/null", timeout=20)
        assert found.output.strip() == ""
    finally:
        marker.unlink()


def test_another_sandboxs_files_are_out_of_reach(escape_sandbox_factory):
    victim, attacker = escape_sandbox_factory(), escape_sandbox_factory()
    secret = secrets.token_hex(16)
    assert victim.sh(f"echo {secret} > /root/secret; echo {secret} > /tmp/secret; sleep 300 &").exit_code == 0
    own_upper = f"{victim.layout.upper}/root/secret {victim.layout.home}/secret {victim.layout.tmp}/secret"
    script = (
        f"cat {own_upper} /proc/*/root/root/secret /proc/*/root/tmp/secret 2>/dev/null;"
        f"cat /var/lib/lab/container/upper/root/secret 2>/dev/null;"
        f"grep -rl {secret} / --exclude-dir=proc --exclude-dir=sys 2>/dev/null"
    )
    assert secret not in attacker.sh(script, timeout=20).output
    assert victim.sh("cat /root/secret").output.strip() == secret  # the secret is there to find


# --- network -------------------------------------------------------------------


def test_only_loopback_exists_inside(escape_sandbox):
    links = escape_sandbox.sh("ls /sys/class/net; ip -o link").output
    assert "eth" not in links and "lo" in links, links
    assert escape_sandbox.sh("ip route").output.strip() == ""


def test_host_redis_and_web_ports_are_unreachable(escape_sandbox, web):
    port = redis_port()
    web_port = urlparse(web).port
    with socket.create_connection(("127.0.0.1", port), timeout=2) as c:  # reachable from the host
        c.sendall(b"PING\r\n")
        assert c.recv(16).startswith(b"+PONG")
    targets = [(ip, p) for ip in ["127.0.0.1", *host_ipv4_addresses()] for p in (port, web_port)]
    for ip, p in targets:
        res = escape_sandbox.sh(f"printf 'PING\\r\\n' | nc -w 2 {ip} {p} 2>&1; echo rc=$?", timeout=10)
        assert "+PONG" not in res.output and "rc=0" not in res.output, (ip, p, res.output)


# --- devices and kernel interfaces ---------------------------------------------


def test_host_block_device_cannot_be_made_or_mounted(escape_sandbox):
    devs = escape_sandbox.sh("cat /sys/block/*/dev").output.split()
    assert devs, "sysfs lists no block device to try"
    script = "mkdir -p /mnt/host;" + "".join(
        f"mknod /tmp/b{i} b {d.replace(':', ' ')} 2>&1 && echo MADE; mount /tmp/b{i} /mnt/host 2>&1 && echo MOUNTED;"
        for i, d in enumerate(devs)
    ) + "mount -t devtmpfs none /mnt/host 2>&1 && echo MOUNTED; mount /dev/vda /mnt/host 2>&1 && echo MOUNTED"
    out = escape_sandbox.sh(script).output
    assert "MADE" not in out and "MOUNTED" not in out, out
    assert "Operation not permitted" in out


def test_cgroup_release_agent_cannot_be_set(escape_sandbox):
    host_agents = {p: p.read_text() for p in Path("/sys/fs/cgroup").glob("*/release_agent")}
    script = """
    mkdir -p /mnt/cg
    for ctl in rdma memory pids; do
      if mount -t cgroup -o $ctl cgroup /mnt/cg 2>/dev/null; then
        echo 1 > /mnt/cg/notify_on_release 2>/dev/null && echo "NOTIFY $ctl"
        echo /tmp/payload > /mnt/cg/release_agent 2>/dev/null && echo "AGENT $ctl"
        mount -o remount,release_agent=/tmp/payload /mnt/cg 2>/dev/null && echo "REMOUNT $ctl"
        umount /mnt/cg
      fi
    done
    mount -t cgroup -o none,name=lab,release_agent=/tmp/payload cgroup /mnt/cg 2>/dev/null && echo "NAMED"
    echo /tmp/payload > /sys/fs/cgroup/memory/release_agent 2>/dev/null && echo "AGENT ro"
    true
    """
    out = escape_sandbox.sh(script).output
    for word in ("AGENT", "REMOUNT", "NAMED"):
        assert word not in out, out
    assert {p: p.read_text() for p in host_agents} == host_agents


def test_proc_sys_and_sysrq_trigger_stay_unwritable_even_unmounted(escape_sandbox):
    core_pattern = Path("/proc/sys/kernel/core_pattern").read_text()
    script = """
    echo '|/tmp/payload' > /proc/sys/kernel/core_pattern 2>/dev/null && echo WROTE-ro
    echo b > /proc/sysrq-trigger 2>/dev/null && echo WROTE-ro
    # CAP_SYS_ADMIN in the user namespace may undo runc's read-only binds ...
    umount /proc/sys 2>/dev/null; umount /proc/sysrq-trigger 2>/dev/null
    # ... but the files belong to host root, which the sandbox is not.
    echo '|/tmp/payload' > /proc/sys/kernel/core_pattern 2>/dev/null && echo WROTE-core
    echo 3 > /proc/sys/vm/drop_caches 2>/dev/null && echo WROTE-vm
    echo b > /proc/sysrq-trigger 2>/dev/null && echo WROTE-sysrq
    mkdir -p /mnt/p && mount -t proc proc /mnt/p && echo '|/tmp/x' > /mnt/p/sys/kernel/core_pattern 2>/dev/null && echo WROTE-fresh
    true
    """
    out = escape_sandbox.sh(script).output
    assert "WROTE" not in out, out
    assert Path("/proc/sys/kernel/core_pattern").read_text() == core_pattern


def test_kernel_module_cannot_be_loaded(escape_sandbox, escape_probe_binary):
    escape_install_probe(escape_sandbox, escape_probe_binary)
    out = escape_sandbox.sh("insmod /bin/busybox 2>&1; probe finit_module").output
    assert "Operation not permitted" in out and out.split()[-1] == EPERM, out


@pytest.mark.parametrize("call", ["io_uring", "bpf", "keyctl", "userfaultfd", "perf"])
def test_dangerous_system_call_is_refused(escape_sandbox, escape_probe_binary, call):
    escape_install_probe(escape_sandbox, escape_probe_binary)
    assert escape_sandbox.sh(f"probe {call}").output.split() == [EPERM]


def test_nested_user_namespace_is_refused_but_lesson_namespaces_work(escape_sandbox, escape_probe_binary):
    escape_install_probe(escape_sandbox, escape_probe_binary)
    out = escape_sandbox.sh("probe unshare_user; probe clone3; unshare -U -r id 2>&1; echo rc=$?").output.split("\n")
    assert out[:2] == [EPERM, ENOSYS], out
    assert "rc=0" not in out[-2], out
    # What the lessons do stays possible: new UTS, mount and pid namespaces, overlay mounts.
    lesson = escape_sandbox.sh(
        "unshare -u sh -c 'hostname inner; hostname' && unshare -m -p -f --mount-proc sh -c 'ps -o pid | wc -l'"
        " && mkdir -p /tmp/t && mount -t tmpfs t /tmp/t && mkdir /tmp/t/l /tmp/t/u /tmp/t/w /tmp/t/m"
        " && mount -t overlay overlay -o lowerdir=/tmp/t/l,upperdir=/tmp/t/u,workdir=/tmp/t/w /tmp/t/m && echo OVERLAY"
    )
    assert lesson.exit_code == 0 and "inner" in lesson.output and "OVERLAY" in lesson.output, lesson.output


def test_inotify_cannot_use_up_host_roots_instances(escape_sandbox, escape_probe_binary):
    escape_install_probe(escape_sandbox, escape_probe_binary)
    # The count would be charged to host root (the owner of the sandbox's user namespace).
    assert escape_sandbox.sh("probe inotify 500 & sleep 0.2; kill $!").output.split()[0] in ("0", ENOSYS)
    fd = os.inotify_init() if hasattr(os, "inotify_init") else None
    if fd is None:
        import ctypes

        fd = ctypes.CDLL(None, use_errno=True).inotify_init1(0)
    assert fd >= 0
    os.close(fd)


# --- privileges -------------------------------------------------------------------


def test_setuid_binary_made_inside_gives_no_privilege(escape_sandbox):
    script = """
    cp /bin/busybox /tmp/sb && chmod 4755 /tmp/sb && ln -s /tmp/sb /tmp/id
    su nobody -s /bin/sh -c '/tmp/id -u; grep NoNewPrivs /proc/self/status'
    """
    out = escape_sandbox.sh(script).output.split()
    assert out[0] == "65534" and out[-1] == "1", out


def test_sandbox_root_is_an_unprivileged_host_uid(escape_sandbox):
    uid = escape_sandbox.layout.session_ids()
    # Its own range (tests/sandbox/test_uidranges.py), not the store's shared one.
    assert uid is not None and uid >= settings.LAB_SANDBOX_RANGE_UID and uid != settings.LAB_SANDBOX_UID
    assert escape_sandbox.sh("cat /proc/self/uid_map /proc/self/gid_map").output.split() == [
        "0", str(uid), "65536", "0", str(uid), "65536"]
    # In the container layer (the upperdir) and in a volume (/tmp) alike.
    assert escape_sandbox.sh("echo mine > /tmp/owned && mkdir -p /srv && echo mine > /srv/owned").exit_code == 0
    for st in ((escape_sandbox.layout.tmp / "owned").stat(), (escape_sandbox.layout.upper / "srv" / "owned").stat()):
        assert (st.st_uid, st.st_gid) == (uid, uid) and uid != 0


# --- read-only views and shared layers -------------------------------------------


def test_lab_views_cannot_be_remounted_writable(escape_sandbox):
    script = """
    for m in /var/lib/lab /var/lib/lab/overlay2/*/diff /var/lib/lab/container/upper /var/lib/lab/bin/init; do
      mount -o remount,rw $m 2>/dev/null && echo "RW $m"
      mount -o remount,bind,rw $m 2>/dev/null && echo "RW $m"
    done
    for d in /var/lib/lab/overlay2/*/diff; do
      mkdir -p /mnt/copy && mount --bind $d /mnt/copy 2>/dev/null && mount -o remount,bind,rw /mnt/copy 2>/dev/null && echo "RW copy"
      umount /mnt/copy 2>/dev/null
    done
    true
    """
    out = escape_sandbox.sh(script).output
    assert "RW" not in out, out


def test_shared_layers_cannot_be_written_through_any_path(escape_sandbox, base_image):
    before = [tree_digest(d) for d in base_image.layer_dirs]
    script = """
    for d in /var/lib/lab/overlay2/*/diff; do
      touch $d/x 2>/dev/null && echo WROTE; rm $d/bin/busybox $d/etc/profile 2>/dev/null && echo WROTE
    done
    touch /var/lib/lab/container/upper/x 2>/dev/null && echo WROTE
    echo x > /var/lib/lab/image.json 2>/dev/null && echo WROTE
    # Through the overlay root: copy-up lands in the private upperdir, not in a layer.
    echo changed > /etc/motd; rm -f /bin/ls; echo x >> /bin/busybox 2>/dev/null
    # Through an overlay of the trainee's own with a layer as its lowerdir.
    mkdir -p /tmp/t && mount -t tmpfs t /tmp/t && mkdir /tmp/t/m
    for d in /var/lib/lab/overlay2/*/diff; do
      rm -rf /tmp/t/u /tmp/t/w && mkdir /tmp/t/u /tmp/t/w
      mount -t overlay overlay -o lowerdir=$d,upperdir=/tmp/t/u,workdir=/tmp/t/w /tmp/t/m && echo OVERLAY
      echo y > /tmp/t/m/new; rm -rf /tmp/t/m/bin /tmp/t/m/etc; umount /tmp/t/m
    done
    true
    """
    out = escape_sandbox.sh(script).output
    assert "WROTE" not in out and out.count("OVERLAY") == len(before), out
    assert [tree_digest(d) for d in base_image.layer_dirs] == before


# --- resources shared with the host ---------------------------------------------------


def test_ptys_stop_at_the_devpts_max(escape_sandbox_factory):
    box = escape_sandbox_factory(ptys=8)
    out = box.sh("for i in $(seq 20); do sleep 30 2>/dev/null <>/dev/ptmx & done; sleep 0.3;"
                 "ls /dev/pts | grep -c '^[0-9]'; kill $(jobs -p)").output
    assert int(out.split()[0]) <= 8, out
    master, slave = os.openpty()  # the host still has terminals to give
    os.close(master)
    os.close(slave)


def test_inodes_stop_at_the_upper_tmpfs_cap(escape_sandbox_factory):
    box = escape_sandbox_factory(disk_mb=4)  # nr_inodes = 4 * 256
    out = box.sh("mkdir /root/many && cd /root/many && i=0;"
                 "while [ $i -lt 1500 ]; do echo -n 2>/dev/null >f$i || { echo FULL $i; break; }; i=$((i+1)); done",
                 timeout=20).output
    assert out.startswith("FULL"), out
    assert int(out.split()[1]) < 1024
    assert box.sh("echo still-alive").output.strip() == "still-alive"


# --- checks: integrity and availability (issue 13, item 4) -----------------------------

FAKE = "printf '#!/var/lib/lab/bin/busybox sh\\nexit 0\\n' > /tmp/fake && chmod 755 /tmp/fake"


def check(box, script: str, *, timeout: float = 5.0):
    """Run a script as a step's check is run."""
    from sandbox.service import sandbox_exec

    return sandbox_exec(box.cfg, box.sid, script, timeout=timeout, check=True)


def test_replaced_shell_and_tools_do_not_make_a_check_pass(escape_sandbox_factory):
    box, other = escape_sandbox_factory(), escape_sandbox_factory()
    # The trainee replaces /bin/sh and every tool a check might use with `exit 0`.
    assert box.sh(FAKE + " && for t in sh test grep awk cat ls; do for d in /bin /usr/bin; do"
                  " [ -e $d/$t ] && rm -f $d/$t && cp /tmp/fake $d/$t; done; done; echo replaced").output.strip() == "replaced"
    res = check(box, "test -e /root/never || { echo missing; exit 1; }")
    assert (res.exit_code, res.output.strip()) == (1, "missing")
    res = check(box, "grep -q nowhere /etc/passwd")
    assert res.exit_code == 1
    # The check's shell is the host's busybox, which sandbox root can neither write nor read.
    out = check(box, "ls -ln /var/lib/lab/bin/busybox; echo x >> /var/lib/lab/bin/busybox 2>&1; "
                     "cat /var/lib/lab/bin/busybox >/dev/null 2>&1 || echo unreadable").output
    assert out.split()[2] == "65534" and "unreadable" in out, out
    # Another sandbox is not affected, and host root still has its shell.
    assert check(other, "test -e /etc/passwd && echo yes").output.strip() == "yes"
    assert subprocess.run(["/bin/busybox", "true"]).returncode == 0


@pytest.mark.parametrize("attack", [
    "mount --bind /tmp/fake /var/lib/lab/bin/busybox",
    "mkdir -p /tmp/v/bin && cp /tmp/fake /tmp/v/bin/busybox && mount --bind /tmp/v /var/lib/lab",
    "mkdir -p /tmp/v/lib/lab/bin && cp /tmp/fake /tmp/v/lib/lab/bin/busybox && mount --bind /tmp/v /var",
    "mkdir -p /tmp/p && mount -t tmpfs p /tmp/p && mkdir -p /tmp/p/self && cp /tmp/fake /tmp/p/self/exe && mount --bind /tmp/p /proc",
    "mkdir -p /tmp/p && mount -t tmpfs p /tmp/p && mkdir -p /tmp/p/self && cp /tmp/fake /tmp/p/self/exe && mount -t tmpfs p /proc/self",
])
def test_a_covered_or_moved_trusted_shell_never_passes_a_check(escape_sandbox_factory, attack):
    from sandbox.exceptions import SandboxError

    box = escape_sandbox_factory()
    # (Once /proc is covered, even the wrapper's `cat` runs the fake: no output to read.)
    res = box.sh(f"{FAKE} && {attack} 2>&1 && echo done")
    assert "done" in res.output or "/proc" in attack, res.output
    try:
        outcome = check(box, "test -e /root/never")
    except SandboxError as exc:
        # Refused with a reason, or runc itself cannot run anything there (/proc covered):
        # either way no pass.
        assert any(w in str(exc) for w in ("could not", "covered", "host's shell", "runc exec failed")), exc
    else:
        assert outcome.exit_code != 0, outcome


def test_a_mount_swapped_while_a_check_runs_voids_its_result(escape_sandbox):
    from sandbox.exceptions import CheckForged

    box = escape_sandbox
    # The trainee's own process mounts and unmounts in a loop while the check runs.
    box.sh(f"{FAKE}; (while :; do mount --bind /tmp/fake /etc/hostname; umount /etc/hostname; done) >/dev/null 2>&1 &")
    with pytest.raises(CheckForged):
        check(box, "sleep 0.5; true")


def test_a_timed_out_check_leaves_no_process_behind(escape_sandbox_factory):
    from sandbox.exceptions import CheckTimeout

    box, other = escape_sandbox_factory(), escape_sandbox_factory()
    with pytest.raises(CheckTimeout):
        # Daemons that leave the check's session and process group, then a hang.
        check(box, "setsid sleep 1001 & (setsid sh -c 'sleep 1002 & sleep 1003') & sleep 1004", timeout=2)
    assert box.sh("ps -o args | grep -c '[s]leep 100'; true").output.split()[0] == "0"
    # A check that ends normally does not leave its background processes either.
    assert check(box, "setsid sleep 1005 & echo started").output.strip() == "started"
    assert box.sh("ps -o args | grep -c '[s]leep 100'; true").output.split()[0] == "0"
    # Processes the trainee started are not the check's: they live on.
    box.sh("sleep 1006 >/dev/null 2>&1 &")
    check(box, "true")
    assert box.sh("ps -o args | grep -c '[s]leep 1006'").output.split()[0] != "0"
    assert check(other, "echo fine").output.strip() == "fine"


def test_the_trusted_shell_cannot_be_traced_by_sandbox_root(escape_sandbox, escape_probe_binary):
    escape_install_probe(escape_sandbox, escape_probe_binary)
    # A long check's shell, then the trainee tries to ptrace it and read its memory.
    import threading

    t = threading.Thread(target=lambda: check(escape_sandbox, "sleep 3; : marker-check", timeout=5))
    t.start()
    try:
        wait_pid = None
        for _ in range(200):
            out = escape_sandbox.sh("m=marker; for p in /proc/[0-9]*; do"
                                    ' grep -q "$m-check" $p/cmdline 2>/dev/null && echo ${p#/proc/}; done; true').output.split()
            if out:
                wait_pid = out[0]
                break
        assert wait_pid, "the check's shell was not seen"
        res = escape_sandbox.sh(f"probe ptrace {wait_pid}; head -c 1 /proc/{wait_pid}/mem >/dev/null 2>&1 || echo no-mem").output.split()
        assert res[0] != "0" and "no-mem" in res, res
    finally:
        t.join()


# --- kernel-global quotas, one sandbox at its worst (issue 13, item 1) -------------------


def hold(box, command: str, *, wait: float = 1.0) -> int:
    """Run a holding prober command in the background; the count it reached."""
    out = box.sh(f"{command} > /tmp/held.out 2>&1 & sleep {wait}; cat /tmp/held.out", timeout=30).output.split()
    return int(out[0]) if out else 0


def test_a_new_devpts_instance_cannot_take_the_hosts_ptys(escape_sandbox_factory, escape_probe_binary):
    box = escape_sandbox_factory()
    escape_install_probe(box, escape_probe_binary)
    # A devpts instance of its own, without max=: its PTYs would count against
    # kernel.pty.max (4096, 3072 of them outside the host's reserve) shared by every console.
    assert "mounted" in box.sh("mkdir -p /tmp/pts && mount -t devpts -o newinstance,ptmxmode=0666 devpts /tmp/pts"
                               " && echo mounted").output
    assert hold(box, "probe ptys 4000 /tmp/pts/ptmx") <= 0
    assert hold(box, "probe ptys 4000 /dev/ptmx") <= 0
    # The sandbox's own terminal is untouched; another sandbox starts; host root has PTYs.
    assert box.sh("echo alive").output.strip() == "alive"
    other = escape_sandbox_factory()
    assert other.sh("echo started").output.strip() == "started"
    master, slave = os.openpty()
    os.close(master)
    os.close(slave)


def test_aio_cannot_reserve_the_hosts_aio_max_nr(escape_sandbox, escape_probe_binary):
    escape_install_probe(escape_sandbox, escape_probe_binary)
    assert escape_sandbox.sh("probe aio 65536").output.split() == [ENOSYS]
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    ctx = ctypes.c_ulong(0)
    assert libc.syscall(206, 128, ctypes.byref(ctx)) == 0  # host root still gets an AIO context
    libc.syscall(207, ctx)


def test_message_queues_and_queued_signals_are_bounded_per_sandbox(escape_sandbox_factory, escape_probe_binary):
    box, other = escape_sandbox_factory(), escape_sandbox_factory()
    for b in (box, other):
        escape_install_probe(b, escape_probe_binary)
    # Both are charged up the user-namespace chain to host root, the namespace's owner.
    assert box.sh("probe mq 1000").output.split()[0] == "-24"  # RLIMIT_MSGQUEUE 0: EMFILE
    assert hold(box, "probe sigq 1000000") == 256  # RLIMIT_SIGPENDING
    assert box.sh("ulimit -i 100000 2>&1; ulimit -q 1000000 2>&1; ulimit -i").output.split()[-1] == "256"
    assert hold(other, "probe sigq 100") == 100
    # Host root queues signals as before (the prober holds, so run it with a deadline).
    probe = escape_probe_path(escape_probe_binary)
    proc = subprocess.Popen([str(probe), "sigq", "100"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "100"
    finally:
        proc.kill()
        proc.wait()
        probe.unlink(missing_ok=True)


def escape_probe_path(blob: bytes) -> Path:
    """The prober as a host file (host root runs it too, to prove it is not starved)."""
    import tempfile

    path = Path(tempfile.gettempdir()) / f"lab-probe-{hashlib.sha256(blob).hexdigest()[:12]}"
    if not path.exists():
        path.write_bytes(blob)
        path.chmod(0o755)
    return path


def test_namespaces_are_bounded_by_the_sandboxs_own_user_namespace(escape_sandbox_factory):
    box = escape_sandbox_factory()
    assert box.sh("cat /proc/sys/user/max_mnt_namespaces /proc/sys/user/max_user_namespaces").output.split() == ["64", "0"]
    # Sandbox root cannot raise them, not even with /proc/sys's read-only bind gone.
    out = box.sh("umount /proc/sys 2>/dev/null; echo 100000 > /proc/sys/user/max_mnt_namespaces 2>&1;"
                 " cat /proc/sys/user/max_mnt_namespaces").output
    assert out.split()[-1] == "64", out
    # Make and pin (bind-mount /proc/<pid>/ns/mnt) as many as it can: it stops at 64.
    script = ("mkdir -p /tmp/pin; i=0; while [ $i -lt 300 ]; do touch /tmp/pin/$i;"
              " unshare -m sleep 600 2>/dev/null & p=$!; sleep 0.01;"
              " mount --bind /proc/$p/ns/mnt /tmp/pin/$i 2>/dev/null; i=$((i+1)); done;"
              " unshare -m true 2>&1; echo rc=$?")
    out = box.sh(script, timeout=60).output
    assert "No space left on device" in out and "rc=1" in out, out[-500:]
    # Another sandbox starts (runc makes 7 namespaces for it) and makes its own.
    other = escape_sandbox_factory()
    assert other.sh("unshare -m -u -p -f true && echo ok").output.strip() == "ok"
    assert subprocess.run(["unshare", "-m", "-u", "true"]).returncode == 0  # host root too


def test_pipe_buffers_of_one_sandbox_do_not_shrink_anothers(escape_sandbox_factory, escape_probe_binary):
    box, other = escape_sandbox_factory(), escape_sandbox_factory()
    for b in (box, other):
        escape_install_probe(b, escape_probe_binary)
    assert Path("/proc/sys/fs/pipe-user-pages-soft").read_text().strip() == "0"
    # 200 pipes of 1 MiB: past the 64 MiB per-uid soft limit that every sandbox shares.
    assert hold(box, "probe pipes 200", wait=2) == 200
    assert hold(other, "probe pipes 8") == 8


def test_fds_in_flight_do_not_stop_a_new_sandbox(escape_sandbox_factory, escape_probe_binary):
    box = escape_sandbox_factory()
    escape_install_probe(box, escape_probe_binary)
    # As many fds in flight (SCM_RIGHTS, never received) as its RLIMIT_NOFILE allows.
    assert hold(box, "ulimit -n 4096; probe scm 1000000", wait=2) >= 4096
    other = escape_sandbox_factory()  # runc hands the new console over SCM_RIGHTS
    assert other.sh("echo started").output.strip() == "started"
    import array

    a, b = socket.socketpair()
    with a, b:
        a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [a.fileno()]))])
        msg, anc, _, _ = b.recvmsg(1, socket.CMSG_SPACE(4))
        assert msg == b"x" and anc
        for level, kind, data in anc:
            os.close(array.array("i", data[:4])[0])
