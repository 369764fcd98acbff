"""`./lab up` tells the truth: what the machine lacks, one line each with the fix; a
part that dies while starting is named with the end of its log, and the run fails."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from labsite import preflight
from tests.support import free_port, port_open

ROOT = Path(__file__).resolve().parent.parent
IS_ROOT = os.geteuid() == 0


def test_a_port_in_use_is_named_with_the_setting_that_moves_it():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        problem = preflight.check_port(port, "the web server", "LAB_PORT")
    assert problem is not None
    assert f"port {port} (the web server) is already in use" in problem and "LAB_PORT" in problem
    assert preflight.check_port(free_port(), "the web server", "LAB_PORT") is None


def test_a_machine_without_the_memory_controller_is_told_how_to_enable_it(tmp_path):
    assert "cgroup_enable=memory" in preflight.check_memory_cgroup(tmp_path)
    (tmp_path / "cgroup.controllers").write_text("cpu io memory pids\n")  # cgroup v2 with it
    assert preflight.check_memory_cgroup(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("max\n")
    assert preflight.check_memory_cgroup(v1) is None


def test_disabled_user_namespaces_are_reported_with_the_sysctl(tmp_path):
    knob = tmp_path / "max_user_namespaces"
    knob.write_text("0\n")
    assert "user.max_user_namespaces" in preflight.check_user_namespaces(knob)
    knob.write_text("15000\n")
    assert preflight.check_user_namespaces(knob) is None


def test_a_data_directory_of_another_layout_is_refused_and_an_unmarked_one_adopted(tmp_path):
    assert preflight.check_data_dir(tmp_path) is None  # an old var/ without a stamp is fine
    preflight.stamp_layout(tmp_path)
    assert preflight.check_data_dir(tmp_path) is None
    (tmp_path / "LAYOUT").write_text("0\n")
    problem = preflight.check_data_dir(tmp_path)
    assert "another version" in problem and "LAB_DATA_DIR" in problem


def test_a_missing_runc_says_how_to_install_it():
    assert "apt-get install runc" in preflight.check_runc("/nonexistent/runc")


def _up(env_extra: dict, tmp_path: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "LAB_TEST_KEEP_ENV")}
    env.update(LAB_DATA_DIR=str(tmp_path / "var"), LAB_HOST_NAME=f"uptest{os.getpid()}",
               DJANGO_SETTINGS_MODULE="labsite.settings.dev", **env_extra)
    return subprocess.run([sys.executable, "-m", "labsite.up"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.skipif(not IS_ROOT, reason="./lab up runs as root")
def test_up_with_its_port_taken_says_so_and_starts_nothing(tmp_path):
    redis_port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        web_port = s.getsockname()[1]
        res = _up({"LAB_PORT": str(web_port), "LAB_REDIS_PORT": str(redis_port)}, tmp_path, timeout=60)
    assert res.returncode == 1
    assert f"lab: port {web_port} (the web server) is already in use" in res.stderr
    assert "ready" not in res.stdout
    assert not port_open(redis_port)  # nothing was started


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="./lab up runs as root")
def test_a_part_that_dies_while_starting_is_named_with_its_log_and_the_run_fails(tmp_path):
    redis_port, web_port = free_port(), free_port()
    # An impossible worker setting: Celery exits at once with a usage error.
    res = _up({"LAB_PORT": str(web_port), "LAB_REDIS_PORT": str(redis_port), "LAB_WORKER_CONCURRENCY": "none"}, tmp_path)
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
    assert "lab: worker exited" in res.stderr and "while starting" in res.stderr
    assert "worker.log" in res.stderr and "none" in res.stderr  # the end of its log, with the cause
    assert "ready:" not in res.stdout
    # Everything it had started was stopped: Redis, the web server, the host's relay.
    assert not port_open(redis_port) and not port_open(web_port)
    assert not (tmp_path / "var" / "hosts" / f"uptest{os.getpid()}" / "relay.sock").exists()


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="./lab up runs as root")
def test_up_says_ready_restarts_a_killed_worker_and_stops_everything_on_ctrl_c(tmp_path):
    import signal

    import redis

    from tests.support import wait_for

    host = f"uptest{os.getpid()}r"
    up, web_port, redis_port = _start_up(tmp_path, host)
    try:
        wait_for(lambda: "ready: http://127.0.0.1:%d/" % web_port in (tmp_path / "up.out").read_text()
                 or up.poll() is not None, timeout=240, what="./lab up to say ready", interval=0.5)
        assert up.poll() is None, (tmp_path / "up.out").read_text()
        # "ready" was true when said: web answers, relay and worker have announced themselves.
        assert port_open(web_port)
        r = redis.Redis(port=redis_port)
        assert r.exists(f"lab:host:{host}") and r.exists(f"lab:worker:{host}")
        first = int(r.get(f"lab:worker:{host}"))
        os.kill(first, signal.SIGKILL)
        again = wait_for(lambda: (p := r.get(f"lab:worker:{host}")) and int(p) != first and int(p),
                         timeout=120, what="a new worker")
        assert again != first
        assert "worker exited" in (tmp_path / "up.out").read_text()  # said, with its log's path
    finally:
        up.send_signal(signal.SIGINT)  # Ctrl-C
        code = up.wait(240)
    text = (tmp_path / "up.out").read_text()
    assert code == 0, text[-3000:]
    assert not port_open(web_port) and not port_open(redis_port)
    assert not Path(f"/run/container-lab/{host}").exists()
    left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _environ_has(p, f"LAB_HOST_NAME={host}")]
    assert left == [], left


def _start_up(tmp_path: Path, host: str) -> tuple[subprocess.Popen, int, int]:
    """`./lab up` (its Python part) on free ports, its output in tmp_path/up.out."""
    redis_port, web_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "LAB_TEST_KEEP_ENV")}
    env.update(LAB_DATA_DIR=str(tmp_path / "var"), LAB_HOST_NAME=host, LAB_PORT=str(web_port),
               LAB_REDIS_PORT=str(redis_port), LAB_WORKER_CONCURRENCY="1", DJANGO_SETTINGS_MODULE="labsite.settings.dev")
    up = subprocess.Popen([sys.executable, "-m", "labsite.up"], cwd=ROOT, env=env, stdout=(tmp_path / "up.out").open("w"),
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return up, web_port, redis_port


def _environ_has(proc: Path, needle: str) -> bool:
    try:
        return needle.encode() in (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        return False


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="./lab up runs as root")
def test_nothing_outlives_a_killed_lab_up(tmp_path):
    from tests.support import wait_for

    host = f"uptest{os.getpid()}k"
    up, web_port, redis_port = _start_up(tmp_path, host)
    out = tmp_path / "up.out"
    try:
        wait_for(lambda: "ready:" in out.read_text() or up.poll() is not None, timeout=240,
                 what="./lab up to say ready", interval=0.5)
        assert up.poll() is None, out.read_text()[-3000:]
    finally:
        up.kill()  # no Ctrl-C, no clean-up code of its own: its parts must still go
        up.wait()
    # Each part is told (PR_SET_PDEATHSIG) and stops as on Ctrl-C; the host drains.
    wait_for(lambda: not [p for p in Path("/proc").iterdir() if p.name.isdigit()
                          and _environ_has(p, f"LAB_HOST_NAME={host}")], timeout=120, what="every part to stop")
    assert not port_open(web_port) and not port_open(redis_port)
    assert not Path(f"/run/container-lab/{host}").exists()


def test_a_second_lab_up_on_the_same_data_directory_is_refused(tmp_path):
    from sandbox.relay.holder import exclusive_lock

    (tmp_path / "var").mkdir()
    held = exclusive_lock(tmp_path / "var" / "up.lock")  # as a running ./lab up holds it
    try:
        res = _up({"LAB_PORT": str(free_port()), "LAB_REDIS_PORT": str(free_port())}, tmp_path, timeout=60)
    finally:
        os.close(held)
    if os.geteuid() != 0:
        pytest.skip("./lab up refuses non-root first")
    assert res.returncode == 1
    assert f"another ./lab up (pid {os.getpid()}) is running with the data directory" in res.stderr


def test_a_port_still_in_time_wait_is_free_and_a_bad_port_is_named():
    import socket as s

    server = s.socket()
    server.setsockopt(s.SOL_SOCKET, s.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    client = s.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server side closes first: its end of the connection waits in TIME_WAIT
    server.close()
    client.close()
    assert preflight.check_port(port, "the web server", "LAB_PORT") is None
    assert "not a TCP port" in preflight.check_port(99999, "the web server", "LAB_PORT")


def test_an_old_kernel_without_idmapped_overlay_layers_is_named_with_the_fix():
    problem = preflight.check_idmapped_layers("5.15.0-91-generic", "1024")
    assert "5.19" in problem and "LAB_SANDBOX_RANGES=0" in problem
    assert preflight.check_idmapped_layers("5.15.0-91-generic", "0") is None
    assert preflight.check_idmapped_layers("6.18.44-fc-v1045", "1024") is None
    assert preflight.check_idmapped_layers() is None  # this machine
