"""Test-run environment, set before Django reads its settings (loaded with -p tests.env).

A private Redis server on a free port and a fresh data directory for this run, so the
suite never touches a running `./lab up` and leaves nothing behind.
"""
from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time

from sandbox.relay.spawn import die_with_parent  # stdlib only: safe before Django


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


REDIS: dict[str, object] = {}


def _start_redis(data_dir: str, port: int | None = None) -> str:
    port = port or _free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", data_dir, "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, preexec_fn=die_with_parent,
    )
    REDIS.update(proc=proc, port=port, dir=data_dir)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    return f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start for the tests")


def restart_redis() -> None:
    """Kill this run's Redis (everything in it is lost: no persistence) and start it again."""
    proc = REDIS["proc"]
    proc.kill()
    proc.wait(10)
    _start_redis(REDIS["dir"], REDIS["port"])


def _stop_redis() -> None:
    proc = REDIS.get("proc")
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(10)


atexit.register(_stop_redis)


if "LAB_TEST_KEEP_ENV" not in os.environ:
    _data = tempfile.mkdtemp(prefix="labtest-", dir="/tmp")
    os.chmod(_data, 0o711)  # sandbox root (an unprivileged host uid) traverses it
    os.environ["LAB_DATA_DIR"] = _data
    os.environ["LAB_HOST_NAME"] = f"test{os.getpid()}"
    os.environ.pop("DATABASE_URL", None)
    if shutil.which("redis-server"):
        os.environ["REDIS_URL"] = _start_redis(_data)
    os.environ["LAB_TEST_KEEP_ENV"] = "1"  # subprocesses inherit this environment as it is

    def _cleanup() -> None:
        from sandbox.mounts import mounts_under
        from pathlib import Path

        if not mounts_under(Path(_data)):
            shutil.rmtree(_data, ignore_errors=True)

    atexit.register(_cleanup)
