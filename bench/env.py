"""The bench's own environment: a private Redis, a fresh data directory, a fresh
SQLite database, the default image, the smoke lab, one real worker host (Celery +
relay) and the real ASGI server — set up as tests/env.py and tests/conftest.py do,
and torn down completely (worker stopped with SIGTERM so its relay removes every
sandbox, then a check that no mount is left under the data directory).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.relay.spawn import die_with_parent  # stdlib only: safe before Django
from tests.support import children_of, free_port, host_argv, port_open, start_redis, wait_for  # noqa: F401  (bench modules import them from here)

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-password-123"


@dataclass
class Env:
    """Everything the bench started, so that stop() can undo it."""

    data_dir: Path
    host: str
    redis: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None
    web: subprocess.Popen | None = None
    web_url: str = ""
    notes: list[str] = field(default_factory=list)

    # ---- before Django ---------------------------------------------------------
    @classmethod
    def create(cls) -> "Env":
        """Private Redis + data dir + host name, exported before Django reads settings."""
        data = Path(tempfile.mkdtemp(prefix="labbench-", dir="/tmp"))
        os.chmod(data, 0o711)  # sandbox root (an unprivileged host uid) traverses it
        env = cls(data_dir=data, host=f"bench{os.getpid()}")
        env.redis, port = start_redis(str(data))
        os.environ.update({
            "LAB_DATA_DIR": str(data), "LAB_HOST_NAME": env.host, "REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "DATABASE_URL": f"sqlite:///{data / 'db.sqlite3'}", "LAB_TEST_KEEP_ENV": "1",
            "LAB_HOST_CAPACITY": os.environ.get("LAB_HOST_CAPACITY", "1000"),
        })
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings.test")
        return env

    # ---- after django.setup() --------------------------------------------------
    def prepare(self) -> None:
        """Migrate, build lab/base, import the smoke lab."""
        from django.core.management import call_command
        from labs.labfile import load_lab
        from labs.services import lab_import

        call_command("migrate", verbosity=0, interactive=False)
        self.build_base()
        lab_import(spec=load_lab(ROOT / "tests" / "fixtures" / "labs" / "smoke"))

    def store(self, root: Path | None = None):
        """The host's image store (or a fresh one at root)."""
        from django.conf import settings
        from sandbox.images.store import ImageStore

        return ImageStore(root or self.data_dir / "images", uid_base=settings.LAB_SANDBOX_UID)

    def build_base(self):
        """lab/base:latest from images/base.yaml."""
        from sandbox.images.recipes import build

        return build(ROOT / "images" / "base.yaml", self.store())

    def make_user(self, name: str):
        """A trainee account with the bench password."""
        from django.contrib.auth import get_user_model

        return get_user_model().objects.create_user(name, f"{name}@example.org", PASSWORD)

    def _spawn(self, argv: list[str], log: str, **extra: str) -> subprocess.Popen:
        env = dict(os.environ, **extra)
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=(self.data_dir / log).open("ab"),
                                stderr=subprocess.STDOUT, preexec_fn=die_with_parent)

    def _tail(self, log: str) -> str:
        return (self.data_dir / log).read_text(errors="replace")[-3000:]

    def start_worker(self, concurrency: int) -> None:
        """This host as `./lab up` runs it: the PTY holder with its relay, and a Celery worker."""
        import redis

        self.concurrency = concurrency
        self.holder = self._spawn(host_argv(sys.executable, str(ROOT / "manage.py"), str(self.data_dir), self.host,
                                            os.environ["REDIS_URL"]), "host.log")
        r = redis.Redis.from_url(os.environ["REDIS_URL"])

        def up():
            if self.holder.poll() is not None:
                raise RuntimeError(f"the host's holder exited: {self._tail('host.log')}")
            return r.get(f"lab:host:{self.host}")

        wait_for(up, timeout=60, what="host heartbeat")
        r.close()
        self.start_celery()

    def start_celery(self) -> None:
        """A Celery worker for this host; returns once it has announced itself."""
        import redis

        r = redis.Redis.from_url(os.environ["REDIS_URL"])
        r.delete(f"lab:worker:{self.host}")
        self.worker = self._spawn(
            [sys.executable, "-m", "celery", "-A", "labsite", "worker", "-l", "warning", "-c", str(self.concurrency),
             "-n", f"{self.host}@%h", "--without-mingle", "--without-gossip"], "worker.log")

        def up():
            if self.worker.poll() is not None:
                raise RuntimeError(f"worker exited: {self._tail('worker.log')}")
            return r.get(f"lab:worker:{self.host}")

        wait_for(up, timeout=60, what="worker ready")
        r.close()

    def start_web(self) -> None:
        """uvicorn with the websockets implementation, as `./lab up` runs it."""
        port = free_port()
        self.web = self._spawn(
            [sys.executable, "-m", "uvicorn", "labsite.asgi:application", "--host", "127.0.0.1", "--port", str(port),
             "--ws", "websockets", "--log-level", "warning"], "web.log")
        self.web_url = f"http://127.0.0.1:{port}"

        def up():
            if self.web.poll() is not None:
                raise RuntimeError(f"web exited: {self._tail('web.log')}")
            return port_open(port)

        wait_for(up, timeout=30, what="uvicorn")

    def relay_pid(self) -> int | None:
        """The relay process the holder runs (`manage.py relay`)."""
        for pid in children_of(self.holder.pid):
            try:
                if b"relay" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
            except OSError:
                continue
        return None

    # ---- teardown --------------------------------------------------------------
    @staticmethod
    def _stop(proc: subprocess.Popen | None, timeout: float = 60) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self, *, keep: bool = False) -> dict:
        """Web, worker, then the host (its relay removes every sandbox), then Redis; report leftovers."""
        self._stop(self.web, 20)
        self._stop(self.worker, 60)
        self._stop(getattr(self, "holder", None), 120)
        left = self.leftover_mounts()
        runc_root = Path("/run/container-lab") / self.host
        containers = sorted(p.name for p in runc_root.iterdir()) if runc_root.is_dir() else []
        self._stop(self.redis, 10)
        for cg in Path("/sys/fs/cgroup").glob(f"*/container-lab/{self.host}"):
            for d in sorted(cg.rglob("*"), key=lambda p: -len(p.parts)) + [cg]:
                if d.is_dir():
                    try:
                        d.rmdir()
                    except OSError:
                        pass
        for d in (runc_root, runc_root.parent / f"{self.host}.relay"):
            try:
                d.rmdir()
            except OSError:
                pass
        removed = False
        if not left and not keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            removed = True
        return {"mounts_left": left, "containers_left": containers, "data_dir": str(self.data_dir),
                "data_dir_removed": removed}

    def leftover_mounts(self) -> list[str]:
        """Mount points under the data dir, as /proc/mounts lists them."""
        prefix = str(self.data_dir).rstrip("/") + "/"
        found = []
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                mp = line.split()[1].encode().decode("unicode_escape")
                if mp.startswith(prefix) or mp == str(self.data_dir):
                    found.append(mp)
        return found
