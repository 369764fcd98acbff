"""Test-run environment, set before Django reads its settings (loaded with -p tests.env).

A private Redis server on a free port and a fresh data directory for this run, so the
suite never touches a running `./lab up` and leaves nothing behind.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from tests.support import start_redis  # stdlib only: safe before Django

REDIS: dict[str, object] = {}


def _start_redis(data_dir: str, port: int | None = None) -> str:
    proc, port = start_redis(data_dir, port)
    REDIS.update(proc=proc, port=port, dir=data_dir)
    return f"redis://127.0.0.1:{port}/0"


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
