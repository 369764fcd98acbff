"""Test-run environment, set before Django reads its settings (loaded with -p tests.env).

A private Redis server on a free port and a fresh data directory for this run, so the
suite never touches a running `./lab up` and leaves nothing behind. With
LAB_TEST_DATABASE=postgresql the run also gets a private PostgreSQL server (initdb in
its data directory, a free port) and every database-touching test, the Celery worker
and the ASGI server use it instead of SQLite; CI runs the suite once each way.
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile

from tests.support import start_postgres, start_redis  # stdlib only: safe before Django

REDIS: dict[str, object] = {}
POSTGRES: dict[str, object] = {}


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
    database = os.environ.get("LAB_TEST_DATABASE", "sqlite")
    if database == "postgresql":
        POSTGRES["proc"], os.environ["DATABASE_URL"] = start_postgres(_data)
    elif database != "sqlite":
        raise SystemExit(f"LAB_TEST_DATABASE={database!r}: expected sqlite or postgresql")
    os.environ["LAB_TEST_KEEP_ENV"] = "1"  # subprocesses inherit this environment as it is

    def _cleanup() -> None:
        from sandbox.mounts import mounts_under
        from pathlib import Path

        if not mounts_under(Path(_data)):
            shutil.rmtree(_data, ignore_errors=True)

    atexit.register(_cleanup)

    def _stop_postgres() -> None:  # registered last, so it runs before _cleanup removes its files
        proc = POSTGRES.get("proc")
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown: it does not wait for clients
            proc.wait(30)

    atexit.register(_stop_postgres)
