"""Child processes of the relay, and the PTY master runc hands over.

The relay is a child subreaper: container inits are reparented to it when `runc run
-d` exits. So it reaps every child itself (one SIGCHLD handler, waitpid(-1)) and the
processes it spawns get their exit status from that handler, not from asyncio's
child watcher, which would race it.
"""
from __future__ import annotations

import array
import asyncio
import ctypes
import ctypes.util
import os
import signal
import socket
from pathlib import Path
from typing import Iterator

PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def become_subreaper() -> None:
    """Orphans of this process (detached container inits) are reparented to it."""
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def die_with_parent() -> None:
    """Be killed when the parent (the Celery worker) dies, even by SIGKILL."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def exited_children() -> Iterator[tuple[int, int]]:
    """(pid, exit code) of every child that has exited, without waiting for any."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, os.waitstatus_to_exitcode(status)


class Reaper:
    """Reaps every child; spawned processes await their exit code."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiters: dict[int, asyncio.Future[int]] = {}
        loop.add_signal_handler(signal.SIGCHLD, self.reap)

    def reap(self) -> None:
        """Collect every exited child; hand spawned ones their status."""
        for pid, code in exited_children():
            fut = self._waiters.pop(pid, None)
            if fut is not None and not fut.done():
                fut.set_result(code)

    async def run(self, argv: list[str], *, timeout: float = 30.0, stdin: int | None = None) -> tuple[int, str]:
        """Run a command, return (exit code, stderr text); stdin: an fd for its fd 0
        (/dev/null by default)."""
        r, w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[
                (os.POSIX_SPAWN_DUP2, devnull if stdin is None else stdin, 0),
                (os.POSIX_SPAWN_DUP2, devnull, 1),
                (os.POSIX_SPAWN_DUP2, w, 2),
                (os.POSIX_SPAWN_CLOSE, r),
            ], setsid=True)
        finally:
            os.close(w)
            os.close(devnull)
        fut: asyncio.Future[int] = self._loop.create_future()
        self._waiters[pid] = fut
        self.reap()  # it may have exited already
        try:
            code = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            os.kill(pid, signal.SIGKILL)
            code = await fut
        stderr = b""
        os.set_blocking(r, False)
        try:
            while chunk := os.read(r, 65536):
                stderr += chunk
        except BlockingIOError:
            pass
        finally:
            os.close(r)
        return code, stderr.decode("utf-8", "replace")


def console_listener(path: Path) -> socket.socket:
    """A unix socket runc connects to with --console-socket."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(1)
    sock.setblocking(False)
    return sock


async def receive_master(loop: asyncio.AbstractEventLoop, listener: socket.socket) -> int:
    """Accept runc's connection and take the PTY master it sends (SCM_RIGHTS)."""
    conn, _ = await loop.sock_accept(listener)
    try:
        fds = array.array("i")
        while True:
            try:
                msg, anc, _flags, _addr = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
            except BlockingIOError:
                fut = loop.create_future()
                loop.add_reader(conn.fileno(), lambda: fut.done() or fut.set_result(None))
                try:
                    await fut
                finally:
                    loop.remove_reader(conn.fileno())
                continue
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
            if fds:
                return fds[0]
            if not msg:
                raise ConnectionError("runc closed the console socket without sending a terminal")
    finally:
        conn.close()
