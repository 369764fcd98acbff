"""Helpers shared by the test suite and the benchmark (stdlib only, no side effects,
safe to import before Django reads its settings): a free port, polling with a
deadline, and a private Redis server that dies with its parent."""
from __future__ import annotations

import socket
import subprocess
import time
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
