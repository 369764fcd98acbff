"""7. Staying up: how long a trainee's terminal is frozen while the Celery worker, or
the relay, is killed and started again — against the same terminal's echo, and the
time a Python process takes to set Django up (what a new relay must do), in the same run."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from bench.client import Terminal
from bench.ready import PROMPT
from bench.report import Figure, pct
from bench.terminal import LabConn, echo_samples
from tests.support import wait_for

ROUNDS = 5


def _echo_after(conn: LabConn, key: bytes, timeout: float = 60) -> float:
    """Send key now and return the ms until its echo comes back."""
    t0 = time.perf_counter()
    conn.send(key)
    buf = b""
    deadline = time.monotonic() + timeout
    while key not in buf:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no echo of {key!r} within {timeout:g} s")
        try:
            buf += conn.recv(0.5) or b""
        except TimeoutError:  # nothing yet: the relay is still coming back
            continue
    ms = (time.perf_counter() - t0) * 1000
    conn.send(b"\x7f")
    buf = b""
    while b"\x08" not in buf:
        buf += conn.recv(10) or b""
    return ms


def _django_setup_ms(env) -> float:
    """A fresh Python process that sets Django up and exits (the bulk of a relay's start)."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=env.data_dir, check=True,
                   env=dict(os.environ, PYTHONPATH=str(os.getcwd())))
    return (time.perf_counter() - t0) * 1000


def run(ctx) -> list[Figure]:
    """Section 7."""
    env = ctx.env
    session = ctx.browser.start()
    term: Terminal = ctx.browser.terminal(session["ws"])
    term.expect(PROMPT, timeout=60)
    conn = LabConn(term)
    try:
        normal = echo_samples(conn, 50)
        anchors = [_django_setup_ms(env) for _ in range(3)]
        during_worker, worker_back, relay_frozen, relay_hup = [], [], [], []
        for i in range(ROUNDS):
            env.worker.kill()
            env.worker.wait()
            t0 = time.perf_counter()
            during_worker += echo_samples(conn, 10)  # the terminal while no worker runs
            env.start_celery()
            worker_back.append((time.perf_counter() - t0) * 1000)
            old = env.relay_pid()
            os.kill(old, signal.SIGKILL)
            relay_frozen.append(_echo_after(conn, b"k"))  # waits for the holder's new relay
            wait_for(lambda: env.relay_pid() not in (None, old), timeout=30, what="new relay")
            old = env.relay_pid()
            env.holder.send_signal(signal.SIGHUP)  # an upgrade: the relay replaced on purpose
            wait_for(lambda: env.relay_pid() not in (None, old), timeout=30, what="replacement relay")
            relay_hup.append(_echo_after(conn, b"u"))
    finally:
        conn.close()
        ctx.browser.stop(session["id"])
    sec = "7. Staying up (a trainee's terminal while processes die)"
    setup = pct(anchors, 50)
    return [
        Figure(sec, "echo p99 while the worker is dead", pct(during_worker, 99), "ms", "same terminal's echo p99",
               pct(normal, 99), n=len(during_worker), ratio_note="the worker is not on the terminal's path"),
        Figure(sec, "worker killed → a new worker ready", pct(worker_back, 50), "ms", "Django set-up (python -c)",
               setup, n=ROUNDS, extra={"samples": worker_back}),
        Figure(sec, "terminal frozen by a killed relay (p50)", pct(relay_frozen, 50), "ms", "Django set-up (python -c)",
               setup, n=ROUNDS, extra={"samples": relay_frozen, "max": max(relay_frozen)}),
        Figure(sec, "first echo after a relay replaced by SIGHUP (p50)", pct(relay_hup, 50), "ms",
               "same terminal's echo p50", pct(normal, 50), n=ROUNDS, extra={"samples": relay_hup}),
    ]
