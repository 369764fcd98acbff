"""The PTY holder on its own (no root, no runc): it keeps the fds it is given, hands
copies back, lets go on request, and supervises a relay command — restarting it when it
dies, replacing it on SIGHUP, and asking it to drain (SIGUSR1) when the host stops."""
from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sandbox.relay.holder import HolderClient
from tests.support import wait_for


@pytest.fixture
def holder_with(tmp_path):
    procs = []

    def start(*relay_argv: str) -> tuple[subprocess.Popen, HolderClient]:
        sock = tmp_path / "holder.sock"
        argv = [sys.executable, "-m", "sandbox.relay.holder", "--socket", str(sock)]
        if relay_argv:
            argv += ["--", *relay_argv]
        proc = subprocess.Popen(argv, cwd=Path(__file__).resolve().parents[2], stderr=(tmp_path / "holder.log").open("w"))
        procs.append(proc)
        wait_for(sock.exists, what="the holder's socket")
        return proc, HolderClient(sock)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_shell_lives_on_while_only_the_holder_keeps_its_pty_master(holder_with):
    proc, client = holder_with()
    master, slave = pty.openpty()
    shell = subprocess.Popen(["sh", "-c", "read line; echo got:$line"], stdin=slave, stdout=slave, stderr=slave,
                             start_new_session=True)
    os.close(slave)
    client.put("s1", master)
    os.close(master)  # the relay's own copy is gone (it died)
    copies = client.take()
    assert list(copies) == ["s1"]
    os.write(copies["s1"], b"hello\n")  # the new relay types into the same shell
    out = b""
    while b"got:hello" not in out:
        out += os.read(copies["s1"], 1024)
    assert shell.wait(5) == 0
    os.close(copies["s1"])


def test_dropping_a_pty_hangs_up_its_shell_and_forgets_it(holder_with):
    proc, client = holder_with()
    master, slave = pty.openpty()
    shell = subprocess.Popen(["sh", "-c", "sleep 60"], stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                             preexec_fn=lambda: __import__("fcntl").ioctl(0, __import__("termios").TIOCSCTTY, 0))
    os.close(slave)
    client.put("s2", master)
    os.close(master)
    client.drop("s2")  # the last master closes: the kernel hangs the terminal up
    assert shell.wait(10) != 0  # SIGHUP
    assert client.take() == {}


def test_many_ptys_come_back_in_chunks_below_scm_max_fd(holder_with):
    proc, client = holder_with()
    pipes = []
    for i in range(450):
        r, w = os.pipe()
        client.put(f"s{i:03}", r)
        os.close(r)
        pipes.append(w)
    copies = client.take()
    assert len(copies) == 450
    os.write(pipes[321], b"x")
    assert os.read(copies["s321"], 1) == b"x"
    for fd in [*copies.values(), *pipes]:
        os.close(fd)


def test_the_relay_is_restarted_replaced_on_sighup_and_drained_on_stop(holder_with, tmp_path):
    log = tmp_path / "relay.log"
    relay = textwrap.dedent(f"""
        import os, signal, sys, time
        log = open({str(log)!r}, "a")
        print("start", os.getpid(), file=log, flush=True)
        def on(sig, frame):
            print("drain" if sig == signal.SIGUSR1 else "term", os.getpid(), file=log, flush=True)
            sys.exit(0)
        signal.signal(signal.SIGUSR1, on)
        signal.signal(signal.SIGTERM, on)
        while True:
            time.sleep(1)
    """)
    proc, client = holder_with(sys.executable, "-c", relay)
    lines = lambda: log.read_text().split("\n") if log.exists() else []  # noqa: E731
    wait_for(lambda: any(line.startswith("start") for line in lines()), what="the relay to start")
    first = int(next(line for line in lines() if line.startswith("start")).split()[1])
    os.kill(first, signal.SIGKILL)  # a crash: started again at once
    wait_for(lambda: sum(line.startswith("start") for line in lines()) == 2, what="a second relay")
    proc.send_signal(signal.SIGHUP)  # an upgrade: SIGTERM to the relay, a new one
    wait_for(lambda: sum(line.startswith("start") for line in lines()) == 3, what="a third relay")
    assert sum(line.startswith("term") for line in lines()) == 1
    proc.send_signal(signal.SIGTERM)  # the host stops: the relay drains, then the holder exits
    assert proc.wait(20) == 0
    assert lines()[-2].startswith("drain")
    assert not (tmp_path / "holder.sock").exists()


def test_the_holder_beats_in_redis_while_it_runs_and_clears_it_when_it_stops(tmp_path):
    import redis

    url = os.environ["REDIS_URL"]  # this run's private Redis (tests/env.py)
    key = f"lab:hold:holdertest{os.getpid()}"  # not the test worker's own host
    sock = tmp_path / "holder.sock"
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.relay.holder", "--socket", str(sock), "--redis", url,
                             "--beat-key", key], cwd=Path(__file__).resolve().parents[2])
    r = redis.Redis.from_url(url)
    try:
        wait_for(lambda: r.exists(key), what="the holder's heartbeat")
        assert 0 < r.ttl(key) <= 5  # it expires by itself if the holder dies
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
    assert not r.exists(key)


def test_a_second_holder_for_the_same_host_is_refused(holder_with, tmp_path):
    first, client = holder_with()
    second = subprocess.run([sys.executable, "-m", "sandbox.relay.holder", "--socket", str(tmp_path / "holder.sock")],
                            cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=30)
    assert second.returncode != 0 and "another PTY holder already runs" in second.stderr
    assert first.poll() is None and client.take() == {}  # the first one still serves
