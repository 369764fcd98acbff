"""`./lab up`: the whole lab on one machine, started in order and kept running.

Parts, each a process of its own with its log in $LAB_DATA_DIR/logs/<part>.log:
  redis   a private Redis on LAB_REDIS_PORT (unless REDIS_URL names one)
  host    the PTY holder, supervising this host's terminal relay (sandbox/relay/holder.py)
  worker  the Celery worker (with beat)
  web     the ASGI server on LAB_PORT

It says "ready" only when the web server answers and the host's relay and worker have
both announced themselves. A part that dies before that ends the run, named, with the
end of its log; one that dies later is started again with back-off, and the sandboxes
live on (they belong to the holder, not to the worker or the relay). Ctrl-C stops the
parts in order: web, worker, then the host (which stops every sandbox), then Redis.

It starts Django's processes but does not set Django up itself, and talks to Redis
over a plain socket, so it can say clearly what is wrong before anything else runs.
"""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from labsite import preflight
from sandbox.relay.holder import exclusive_lock

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 180.0
BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0)
# More crashes than this within CRASH_WINDOW seconds: something is broken, stop trying.
CRASH_LIMIT = 5
CRASH_WINDOW = 120.0
STOP_SECONDS = {"web": 20.0, "worker": 60.0, "host": 120.0, "redis": 10.0}


def say(text: str) -> None:
    """A status line, as the `lab` script prints them."""
    print(f"\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"==> {text}", flush=True)


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log, indented."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text) or "    (empty log)"


def _stop_with_parent() -> None:
    """SIGTERM this child when `./lab up` dies, even by SIGKILL: no part outlives it
    (the host's holder then drains its sandboxes as on Ctrl-C)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


@dataclass
class Part:
    """One supervised process."""

    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen | None = None
    crashes: list[float] = field(default_factory=list)
    restart_at: float | None = None
    # Kill what the process leaves behind in its process group when it ends (Celery's
    # pool children outlive a killed master). Not for the host: its group is the
    # sandboxes' business, and the next relay reconciles them.
    sweep_group: bool = True

    def start(self, env: dict[str, str]) -> None:
        """Start it, in a session of its own: a terminal's Ctrl-C reaches the supervisor only."""
        self.restart_at = None
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_stop_with_parent)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sweep(self) -> None:
        """SIGKILL whatever is left in the ended process's group."""
        if self.sweep_group and self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after its grace period."""
        if not self.alive():
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_SECONDS.get(self.name, 30.0))
        except subprocess.TimeoutExpired:
            say(f"{self.name} did not stop in {STOP_SECONDS.get(self.name, 30.0):g} s; killing it")
            self.proc.kill()
            self.proc.wait()
        self.sweep()


class Failed(Exception):
    """The lab cannot run; the message says why."""


class Lab:
    """The parts of one machine's lab, in start order."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.data_dir = Path(env["LAB_DATA_DIR"])
        self.host = env["LAB_HOST_NAME"]
        self.port = int(env.get("LAB_PORT", "8000"))
        self.logs = self.data_dir / "logs"
        self.parts: list[Part] = []
        self.stopping = False
        py = sys.executable
        manage = str(ROOT / "manage.py")
        holder_socket = self.data_dir / "hosts" / self.host / "holder.sock"
        self.specs = {
            "host": [py, "-m", "sandbox.relay.holder", "--socket", str(holder_socket),
                     "--beat-key", f"lab:hold:{self.host}", "--", py, manage, "relay"],
            "worker": [py, "-m", "celery", "-A", "labsite", "worker", "-B", "-l", "warning",
                       "-c", env.get("LAB_WORKER_CONCURRENCY", "4"), "-n", f"{self.host}@%h",
                       "-s", str(self.data_dir / "celerybeat-schedule")],
            "web": [py, "-m", "uvicorn", "labsite.asgi:application", "--host", "127.0.0.1", "--port", str(self.port),
                    "--log-level", "warning", "--ws", "websockets"],
        }

    # ---- Redis -------------------------------------------------------------------
    def redis_port(self) -> int | None:
        """The private Redis's port, or None when REDIS_URL names another server."""
        if self.env.get("REDIS_URL"):
            return None
        return int(self.env.get("LAB_REDIS_PORT", "6390"))

    def redis_call(self, *words: str) -> str | None:
        """One Redis command over a raw socket (no client library needed); None if unreachable."""
        url = self.env["REDIS_URL"]
        hostport = url.split("//", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
        host, _, port = hostport.partition(":")
        cmd = f"*{len(words)}\r\n" + "".join(f"${len(w.encode())}\r\n{w}\r\n" for w in words)
        try:
            with socket.create_connection((host, int(port or 6379)), timeout=2) as s:
                s.sendall(cmd.encode())
                reply = s.recv(65536).decode(errors="replace")
        except OSError:
            return None
        if reply.startswith("$-1"):
            return ""
        return reply.split("\r\n")[1] if reply.startswith("$") else reply.strip()

    def start_redis(self) -> None:
        port = self.redis_port()
        if port is None:
            if self.redis_call("PING") is None:
                raise Failed(f"the Redis server at REDIS_URL={self.env['REDIS_URL']} does not answer")
            return
        self.env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        if self.redis_call("PING") == "+PONG":
            say(f"redis already running on :{port}; using it")
            return
        (self.data_dir / "redis").mkdir(exist_ok=True)
        part = Part("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.data_dir / "redis"),
                              "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
                    self.logs / "redis.log")
        part.start(self.env)
        self.parts.append(part)
        self.wait(lambda: self.redis_call("PING") == "+PONG", 20, "redis to answer")
        say(f"private redis on 127.0.0.1:{port}")

    # ---- preparing ---------------------------------------------------------------
    def prepare(self) -> None:
        """Database, default image, built-in labs, the admin account (`manage.py prepare`)."""
        say("database, default image, built-in labs")
        code = subprocess.run([sys.executable, str(ROOT / "manage.py"), "prepare"], cwd=ROOT, env=self.env).returncode
        if self.stopping:
            raise KeyboardInterrupt
        if code != 0:
            raise Failed("`manage.py prepare` failed (its output is above)")

    # ---- running -----------------------------------------------------------------
    def start_parts(self) -> None:
        host = self.specs["host"]
        at = host.index("--")
        host[at:at] = ["--redis", self.env["REDIS_URL"]]  # known once Redis runs
        for name in ("host", "worker", "web"):
            part = Part(name, self.specs[name], self.logs / f"{name}.log", sweep_group=name != "host")
            part.start(self.env)
            self.parts.append(part)

    def ready(self) -> bool:
        """Web answers, and this host's relay and worker have announced themselves."""
        for part in self.parts:
            if not part.alive():
                raise Failed(f"{part.name} exited (code {part.proc.returncode if part.proc else '?'}) while starting; "
                             f"the end of {part.log}:\n{tail(part.log)}")
        if not self.redis_call("EXISTS", f"lab:host:{self.host}") == ":1":
            return False
        if not self.redis_call("EXISTS", f"lab:worker:{self.host}") == ":1":
            return False
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", "/accounts/login/")
            return conn.getresponse().status < 500
        except OSError:
            return False

    def wait(self, cond, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if self.stopping:
                raise KeyboardInterrupt
            if time.monotonic() > deadline:
                waiting = {"lab:host": "the host's relay (host.log)", "lab:worker": "the Celery worker (worker.log)"}
                missing = [v for k, v in waiting.items() if self.redis_call("EXISTS", f"{k}:{self.host}") != ":1"]
                raise Failed(f"timed out after {timeout:g} s waiting for {what}"
                             + (f"; no word yet from {', '.join(missing)}" if missing else ""))
            time.sleep(0.2)

    def supervise(self) -> None:
        """Restart what dies, with back-off; give up on a part that keeps dying."""
        while not self.stopping:
            now = time.monotonic()
            for part in self.parts:
                if part.alive() or self.stopping:
                    continue
                if part.restart_at is None:
                    part.sweep()
                    code = part.proc.returncode if part.proc else "?"
                    part.crashes = [t for t in part.crashes if now - t < CRASH_WINDOW] + [now]
                    if len(part.crashes) > CRASH_LIMIT:
                        raise Failed(f"{part.name} died {len(part.crashes)} times in {CRASH_WINDOW:g} s; "
                                     f"the end of {part.log}:\n{tail(part.log)}")
                    delay = BACKOFF[min(len(part.crashes) - 1, len(BACKOFF) - 1)]
                    say(f"{part.name} exited (code {code}); starting it again in {delay:g} s (log: {part.log})")
                    part.restart_at = now + delay
                elif now >= part.restart_at:
                    part.start(self.env)
            time.sleep(0.25)

    def stop(self) -> None:
        """Newest first: web, worker, the host (its relay stops every sandbox), Redis."""
        self.stopping = True
        if any(p.alive() for p in self.parts):
            say("stopping")
        for part in reversed(self.parts):
            part.stop()


def main() -> int:
    """Check, prepare, start, wait until ready, supervise; 0 after Ctrl-C, 1 on failure."""
    env = dict(os.environ)
    env.setdefault("LAB_DATA_DIR", str(ROOT / "var"))
    env.setdefault("LAB_HOST_NAME", socket.gethostname() or "localhost")
    env.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings.dev")
    env["PYTHONUNBUFFERED"] = "1"
    for name in ("LAB_PORT", "LAB_REDIS_PORT"):  # (Celery names a bad LAB_WORKER_CONCURRENCY itself)
        if name in env and not env[name].isdigit():
            print(f"lab: {name}={env[name]!r} is not a number", file=sys.stderr)
            return 1
    lab = Lab(env)
    redis_port = lab.redis_port()
    if redis_port is not None:
        env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        if lab.redis_call("PING") == "+PONG":
            redis_port = None  # a Redis of ours from before: reused, not a port conflict
        env.pop("REDIS_URL")
    found = preflight.problems(data_dir=lab.data_dir, web_port=lab.port, redis_port=redis_port,
                               runc=env.get("LAB_RUNC", "runc"))
    if found:
        for line in found:
            print(f"lab: {line}", file=sys.stderr)
        return 1
    lock = exclusive_lock(lab.data_dir / "up.lock")  # held until this process ends
    if lock is None:
        other = (lab.data_dir / "up.lock").read_text().strip() or "?"
        print(f"lab: another ./lab up (pid {other}) is running with the data directory {lab.data_dir} — "
              "stop it first, or set LAB_DATA_DIR to another directory", file=sys.stderr)
        return 1
    lab.data_dir.chmod(0o711)  # sandbox root (an unprivileged host uid) traverses it
    preflight.stamp_layout(lab.data_dir)
    lab.logs.mkdir(exist_ok=True)

    def on_signal(signum, frame) -> None:
        lab.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        lab.start_redis()
        lab.prepare()
        say(f"starting host {lab.host}: relay, worker, web")
        lab.start_parts()
        lab.wait(lab.ready, READY_TIMEOUT, "the lab to be ready")
        say(f"ready: http://127.0.0.1:{lab.port}/  (logs: {lab.logs}/; Ctrl-C stops everything)")
        lab.supervise()
        return 0
    except KeyboardInterrupt:
        return 0
    except Failed as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    finally:
        lab.stop()


if __name__ == "__main__":
    sys.exit(main())
