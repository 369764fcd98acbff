"""Fixtures that run the real parts: the default image, a Celery worker with its relay,
and the ASGI server, all on this run's private Redis and SQLite file."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from django.conf import settings

from sandbox.relay.spawn import die_with_parent
from tests.support import children_of, free_port, host_argv, port_open, wait_for  # noqa: F401  (tests import them from here)

ROOT = Path(__file__).resolve().parent.parent
IS_ROOT = os.geteuid() == 0


def subprocess_database_url() -> str:
    """The test database as a DATABASE_URL for the processes the tests start (worker, web,
    manage.py): SQLite's file, or PostgreSQL's test database once pytest-django made it."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['TEST']['NAME']}"
    if not db["NAME"].startswith("test_"):  # never point a worker at the real database
        raise RuntimeError("the PostgreSQL test database is not set up yet (use the django_db_setup fixture)")
    return f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _subprocess_env() -> dict:
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "labsite.settings.test"
    env["DATABASE_URL"] = subprocess_database_url()
    return env


@pytest.fixture(scope="session")
def base_image():
    """The default image lab/base:latest, built from images/base.yaml."""
    if not IS_ROOT:
        pytest.skip("building layers with shifted ownership needs root")
    from sandbox.images.recipes import build
    from sandbox.images.store import ImageStore

    store = ImageStore(Path(settings.LAB_DATA_DIR) / "images", uid_base=settings.LAB_SANDBOX_UID)
    return build(ROOT / "images" / "base.yaml", store)


@dataclass
class Worker:
    """One sandbox host as production runs it: the PTY holder supervising the relay,
    and the Celery worker, as separate processes."""

    proc: subprocess.Popen  # the Celery worker
    holder: subprocess.Popen  # the PTY holder; the relay is its child
    host: str
    log: Path
    env: dict

    @property
    def relay_pid(self) -> int | None:
        """The relay the holder runs now (None while it is being restarted)."""
        kids = children_of(self.holder.pid)
        return next((pid for pid in kids if b"relay" in Path(f"/proc/{pid}/cmdline").read_bytes()), None)

    def restart(self) -> None:
        """Start the same host again (after stop or kill)."""
        self.stop()
        fresh = start_worker(self.host, self.env)
        self.proc, self.holder = fresh.proc, fresh.holder

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGKILL: the whole host dies at once. SIGTERM: worker, then host (its sandboxes stop)."""
        for proc in (self.proc, self.holder):
            if proc.poll() is None:
                proc.send_signal(sig)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def kill_worker(self) -> None:
        """SIGKILL the Celery worker alone."""
        self.proc.kill()
        self.proc.wait()

    def start_worker_again(self) -> None:
        """A new Celery worker for the same host (the holder and relay untouched)."""
        self.proc = _start_celery(self.host, self.env, self.log)


def _start_celery(host: str, env: dict, log: Path) -> subprocess.Popen:
    import redis

    r = redis.Redis.from_url(settings.REDIS_URL)
    r.delete(f"lab:worker:{host}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "labsite", "worker", "-l", "info", "-c", "2", "-n", f"{host}@%h",
         "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
    )

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"worker exited: {log.read_text()[-3000:]}")
        return r.get(f"lab:worker:{host}")

    wait_for(up, timeout=60, what=f"worker {host} ready")
    return proc


def start_worker(host: str, env: dict | None = None, data_dir: Path | None = None) -> Worker:
    """A real sandbox host (holder + relay) and its Celery worker; waits for both.
    `data_dir`: a store and sessions of its own, as a host on another machine has."""
    import redis

    env = dict(env or _subprocess_env())
    env["LAB_HOST_NAME"] = host
    if data_dir is not None:
        env["LAB_DATA_DIR"] = str(data_dir)
    log = Path(settings.LAB_DATA_DIR) / f"worker-{host}.log"
    started = time.time()
    holder = subprocess.Popen(
        host_argv(sys.executable, str(ROOT / "manage.py"), env.get("LAB_DATA_DIR", str(settings.LAB_DATA_DIR)), host, settings.REDIS_URL),
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
    )
    r = redis.Redis.from_url(settings.REDIS_URL)

    def up():
        if holder.poll() is not None:
            raise AssertionError(f"holder exited: {log.read_text()[-3000:]}")
        beat = r.get(f"lab:host:{host}")
        # This host's own beat: a killed one's lingers for its TTL, and the new relay beats
        # only once it has reconciled what the old one left.
        return beat and json.loads(beat)["ts"] >= started

    wait_for(up, timeout=60, what=f"host {host} heartbeat")
    return Worker(_start_celery(host, env, log), holder, host, log, env)


@pytest.fixture(scope="session")
def worker(base_image, django_db_setup, django_db_blocker) -> Iterator[Worker]:
    """One sandbox host for the whole run."""
    w = start_worker(settings.LAB_HOST_NAME)
    yield w
    w.stop()


WEB: dict[str, subprocess.Popen] = {}


def _start_web(port: int) -> subprocess.Popen:
    log = Path(settings.LAB_DATA_DIR) / "web.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "labsite.asgi:application", "--host", "127.0.0.1", "--port", str(port),
         "--ws", "websockets", "--log-level", "warning"],
        cwd=ROOT, env=_subprocess_env(), stdout=log.open("ab"), stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
    )

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"web exited: {log.read_text()[-3000:]}")
        return port_open(port)

    wait_for(up, timeout=30, what="uvicorn")
    return proc


def restart_web(url: str) -> None:
    """Stop the ASGI server behind url (closing every WebSocket) and start it again."""
    proc = WEB[url]
    proc.terminate()
    proc.wait(20)
    WEB[url] = _start_web(int(url.rsplit(":", 1)[1]))


@pytest.fixture(scope="session")
def web(django_db_setup) -> Iterator[str]:
    """The real ASGI server (uvicorn) on a free port; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    WEB[url] = _start_web(port)
    yield url
    WEB[url].terminate()
    WEB[url].wait(20)


@pytest.fixture
def builtin_labs(transactional_db):
    """The built-in labs, imported into this test's database."""
    from labs.labfile import course_order, discover_labs, load_lab
    from labs.services import lab_import

    specs = course_order([load_lab(p) for p in discover_labs(ROOT / "labs" / "builtin")])
    return [lab_import(spec=spec, position=i)[0] for i, spec in enumerate(specs)]


@pytest.fixture
def make_user(transactional_db):
    from django.contrib.auth import get_user_model

    def make(name: str = "trainee", password: str = "pw-for-tests-123"):
        return get_user_model().objects.create_user(name, f"{name}@example.org", password)

    return make


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state letter) for every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            rest = stat.rsplit(")", 1)[1].split()
            table[int(entry.name)] = (int(rest[1]), rest[0])
    return table


def zombies_under(root_pid: int) -> list[int]:
    """Zombie processes descending from root_pid (the worker and its relay)."""
    table = process_table()

    def descends(pid: int) -> bool:
        seen = set()
        while pid and pid not in seen:
            if pid == root_pid:
                return True
            seen.add(pid)
            pid = table.get(pid, (0, ""))[0]
        return False

    return [pid for pid, (_, state) in table.items() if state == "Z" and descends(pid)]


@pytest.fixture(autouse=True)
def _stop_sandboxes_after_each_test(request):
    """Every sandbox a test started on the run's host is stopped after it, so tests
    do not see each other's sandboxes (the database rows are flushed anyway)."""
    yield
    if "worker" not in request.fixturenames or not IS_ROOT:
        return
    from labs.hostconfig import host_config
    from sandbox.runtime import runc_list
    from sandbox.service import sandbox_stop

    cfg = host_config()
    for container in runc_list(cfg):
        sandbox_stop(cfg, container["id"])
