"""Helpers shared by the test suite and the benchmark (stdlib only, no side effects,
safe to import before Django reads its settings): a free port, polling with a
deadline, and private Redis and PostgreSQL servers that die with their parent."""
from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

from sandbox.relay.spawn import die_with_parent


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond: Callable[[], object], *, timeout: float = 20, what: str = "condition", interval: float = 0.05):
    """Poll until cond() is truthy and return its value; no bare sleeps as synchronisation."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def port_open(port: int) -> bool:
    """Something accepts TCP connections on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as c:
            c.sendall(b"PING\r\n")
            return c.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(data_dir: str, port: int | None = None) -> tuple[subprocess.Popen, int]:
    """A private redis-server (no persistence) on 127.0.0.1; returns (process, port)."""
    port = port or free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(data_dir), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, preexec_fn=die_with_parent,
    )
    wait_for(lambda: _redis_answers(port), timeout=10, what="redis-server")
    return proc, port


def host_argv(python: str, manage: str, data_dir: str, host: str, redis_url: str) -> list[str]:
    """This host's PTY holder (beating in Redis) supervising its relay, as `./lab up` runs them."""
    holder_socket = f"{data_dir}/hosts/{host}/holder.sock"
    return [python, "-m", "sandbox.relay.holder", "--socket", holder_socket, "--redis", redis_url,
            "--beat-key", f"lab:hold:{host}", "--", python, manage, "relay"]


def children_of(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    try:
        return [int(c) for c in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def postgres_bindir() -> Path | None:
    """Debian's PostgreSQL server programs (the newest installed version), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else None


def _as_postgres() -> Callable[[], None]:
    """preexec_fn: drop to the `postgres` user when root (the server refuses to run as
    root), then die with the parent (set after setuid, which clears it)."""
    user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def preexec() -> None:
        if user is not None:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
        die_with_parent()

    return preexec


def start_postgres(data_dir: str, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """A private PostgreSQL server for one run: initdb in data_dir/postgres (trust, loopback
    only, fsync off), its database `lab`; returns (postmaster, DATABASE_URL). Stop it with
    SIGINT (a fast shutdown: it does not wait for clients)."""
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")
    pgdata = Path(data_dir) / "postgres"
    pgdata.mkdir(mode=0o700)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(pgdata, user.pw_uid, user.pw_gid)
    log = Path(data_dir) / "postgres.log"
    init = subprocess.run([str(bindir / "initdb"), "-D", str(pgdata), "-U", "lab", "--auth=trust", "-E", "UTF8",
                           "--locale=C.UTF-8", "--no-sync"], capture_output=True, text=True, preexec_fn=_as_postgres())
    if init.returncode:
        raise RuntimeError(f"initdb failed: {init.stderr.strip()[-2000:]}")
    port = port or free_port()
    proc = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(pgdata), "-p", str(port), "-k", str(pgdata),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off", "-c", "max_connections=200"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, preexec_fn=_as_postgres(),
    )

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"postgres exited: {log.read_text()[-2000:]}")
        return subprocess.run([str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode == 0

    wait_for(ready, timeout=60, what="postgres", interval=0.1)
    subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "lab", "lab"], check=True,
                   capture_output=True)
    return proc, f"postgresql://lab@127.0.0.1:{port}/lab"


def ws_messages(ws, until: Callable[[list], object], *, timeout: float = 20) -> list[dict]:
    """JSON messages from a (sync) WebSocket until `until(messages)` holds."""
    import json

    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while not until(seen):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out; got {seen!r}")
        try:
            seen.append(json.loads(ws.recv(timeout=left)))
        except TimeoutError:
            continue
    return seen
