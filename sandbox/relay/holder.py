"""The PTY holder: keeps every PTY master of a host open while relays come and go.

A sandbox's shell lives as long as some process holds its PTY master; when the last
copy closes, the kernel hangs the terminal up and the shell dies. The relay holds a
copy to do its work, and gives a second copy to this small process, which does nothing
else (systemd's file descriptor store and conmon play the same part): a relay that
crashes, is killed or is upgraded leaves every shell alive, and its successor takes
the copies back and carries on.

It also supervises the relay when given a command (`python -m sandbox.relay.holder
--socket PATH -- RELAY ARGV…`): it runs it, restarts it with back-off when it dies,
and is the child subreaper that reaps container inits, since those are orphaned by
`runc run -d` and would otherwise outlive a dead relay as zombies. Signals:
  SIGTERM, SIGINT  the host shuts down: the relay is asked to drain (SIGUSR1: stop
                   every sandbox), then the holder closes what it holds and exits.
  SIGHUP           replace the relay (an upgrade): SIGTERM to it, start it again at once.

With `--redis URL --beat-key KEY` it also keeps KEY alive in Redis (TTL 5 s) while it
runs: the host's sandboxes are alive exactly as long as the holder is, so a page whose
relay is being restarted shows "reconnecting", not "lost".

Standard library only, and no knowledge of Django or runc; Redis is spoken over a plain
socket, three commands of it. The less it does, the less can make it die. Requests are
SOCK_SEQPACKET messages of JSON:
  {"op": "put", "sid": S}  with one fd (SCM_RIGHTS)    -> {"ok": true}
  {"op": "drop", "sid": S}                             -> {"ok": true}
  {"op": "take"}  -> {"ok": true, "sids": [...], "more": bool} with their fds, in chunks
"""
from __future__ import annotations

import argparse
import array
import ctypes
import ctypes.util
import fcntl
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from sandbox.relay.spawn import exited_children  # stdlib only, like this module

log = logging.getLogger("sandbox.holder")

PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
# SCM_MAX_FD is 253: fds travel in chunks below it.
CHUNK = 200
MSG_BYTES = 64 * 1024
# Back-off between relay restarts; a relay that stayed up this long starts the count again.
BACKOFF = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)
STABLE_SECONDS = 30.0
DRAIN_SECONDS = 90.0
BEAT_SECONDS = 1.5
BEAT_TTL = 5


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(option, value, 0, 0, 0)


def exclusive_lock(path: Path) -> int | None:
    """An exclusive flock on path held for this process's life (with our pid in it), or
    None when another process holds it. The kernel lets go when the process ends."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


class Beat:
    """SET key 1 EX ttl, every BEAT_SECONDS, over a plain socket (RESP)."""

    def __init__(self, url: str, key: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "redis":
            raise ValueError(f"the holder speaks plain redis:// only, not {parsed.scheme}://")
        self.addr = (parsed.hostname or "127.0.0.1", parsed.port or 6379)
        self.password = unquote(parsed.password) if parsed.password else None
        self.db = int((parsed.path or "/0").strip("/") or 0)
        self.key = key
        self.next_at = 0.0
        self.failing = False

    @staticmethod
    def _cmd(*words: str) -> bytes:
        return f"*{len(words)}\r\n".encode() + b"".join(
            f"${len(w.encode())}\r\n".encode() + w.encode() + b"\r\n" for w in words)

    def due(self) -> float:
        """Seconds until the next beat."""
        return max(0.0, self.next_at - time.monotonic())

    def beat(self) -> None:
        """One beat; a failure is logged once and tried again next time."""
        self.next_at = time.monotonic() + BEAT_SECONDS
        self._send(self._cmd("SET", self.key, str(os.getpid()), "EX", str(BEAT_TTL)), b"+OK")

    def stop(self) -> None:
        """The holder is going: so is the host."""
        self._send(self._cmd("DEL", self.key), b":")

    def _send(self, command: bytes, ok: bytes) -> None:
        cmds = []
        if self.password:
            cmds.append(self._cmd("AUTH", self.password))
        if self.db:
            cmds.append(self._cmd("SELECT", str(self.db)))
        cmds.append(command)
        try:
            with socket.create_connection(self.addr, timeout=1.0) as s:
                s.sendall(b"".join(cmds))
                reply = b""
                while reply.count(b"\r\n") < len(cmds):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
            lines = reply.split(b"\r\n")
            if len(lines) < len(cmds) or not lines[len(cmds) - 1].startswith(ok) or b"-" in [ln[:1] for ln in lines]:
                raise OSError(reply.decode(errors="replace").strip() or "no answer")
            if self.failing:
                log.info("heartbeat to Redis works again")
            self.failing = False
        except OSError as exc:
            if not self.failing:
                log.warning("heartbeat to Redis failed: %s", exc)
            self.failing = True


class Holder:
    """The fd store and, optionally, the relay's supervisor."""

    def __init__(self, socket_path: Path, argv: list[str], beat: Beat | None = None) -> None:
        self.socket_path = socket_path
        self.argv = argv
        self.beat = beat
        self.fds: dict[str, int] = {}
        self.child: subprocess.Popen | None = None
        self.child_started = 0.0
        self.restarts = 0
        self.restart_at: float | None = None
        self.stopping = False
        self.replacing = False
        self.stop_deadline = 0.0
        self.sel = selectors.DefaultSelector()

    # ---- the store -------------------------------------------------------------
    def put(self, sid: str, fd: int) -> None:
        """Keep fd for sid (replacing an older copy)."""
        old = self.fds.pop(sid, None)
        if old is not None:
            os.close(old)
        self.fds[sid] = fd

    def drop(self, sid: str) -> None:
        """Forget sid and close its copy."""
        fd = self.fds.pop(sid, None)
        if fd is not None:
            os.close(fd)

    def _handle(self, conn: socket.socket) -> None:
        try:
            msg, anc, _flags, _addr = conn.recvmsg(MSG_BYTES, socket.CMSG_SPACE(4 * 4))
        except OSError:
            msg, anc = b"", []
        fds = array.array("i")
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
        if not msg:
            for fd in fds:
                os.close(fd)
            self.sel.unregister(conn)
            conn.close()
            return
        try:
            req = json.loads(msg)
            op, sid = req.get("op"), str(req.get("sid", ""))
            if op == "put" and sid and len(fds) == 1:
                self.put(sid, fds.pop())
                conn.send(b'{"ok": true}')
            elif op == "drop" and sid:
                self.drop(sid)
                conn.send(b'{"ok": true}')
            elif op == "take":
                self._send_all(conn)
            else:
                conn.send(json.dumps({"ok": False, "error": f"bad request {op!r}"}).encode())
        except (ValueError, OSError) as exc:
            log.warning("holder request failed: %s", exc)
        finally:
            for fd in fds:  # anything not kept
                os.close(fd)

    def _send_all(self, conn: socket.socket) -> None:
        items = sorted(self.fds.items())
        chunks = [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)] or [[]]
        for i, chunk in enumerate(chunks):
            body = json.dumps({"ok": True, "sids": [s for s, _ in chunk], "more": i < len(chunks) - 1}).encode()
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd for _, fd in chunk]))] if chunk else []
            conn.sendmsg([body], anc)

    # ---- the relay it supervises -----------------------------------------------
    def _spawn(self) -> None:
        self.restart_at = None
        self.child_started = time.monotonic()
        # The relay dies with the holder (SIGKILL included): a relay without its
        # holder could not keep its promise that shells survive it.
        self.child = subprocess.Popen(self.argv, preexec_fn=lambda: _prctl(PR_SET_PDEATHSIG, signal.SIGKILL))
        log.info("relay started (pid %d)", self.child.pid)

    def _reap(self) -> None:
        """Collect every exited child: the relay, and container inits orphaned to us."""
        for pid, code in exited_children():
            if self.child is not None and pid == self.child.pid:
                self.child.returncode = code
                self._relay_exited(code)

    def _relay_exited(self, code: int) -> None:
        self.child = None
        if self.stopping:
            return
        if self.replacing:  # SIGHUP: replaced on purpose, at once
            self.replacing = False
            log.info("relay replaced")
            self.restart_at = time.monotonic()
            return
        if time.monotonic() - self.child_started > STABLE_SECONDS:
            self.restarts = 0
        delay = BACKOFF[min(self.restarts, len(BACKOFF) - 1)]
        self.restarts += 1
        log.warning("relay exited with %s; starting it again in %.1f s", code, delay)
        self.restart_at = time.monotonic() + delay

    # ---- signals ---------------------------------------------------------------
    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            self._reap()
        elif signum == signal.SIGHUP and self.child is not None and not self.stopping:
            log.info("replacing the relay")
            self.restarts = 0
            self.replacing = True
            self.child.send_signal(signal.SIGTERM)
        elif signum in (signal.SIGTERM, signal.SIGINT) and not self.stopping:
            self.stopping = True
            self.stop_deadline = time.monotonic() + DRAIN_SECONDS
            if self.child is not None:
                self.child.send_signal(signal.SIGUSR1)  # drain: stop every sandbox

    # ---- main loop -------------------------------------------------------------
    def serve(self) -> None:
        """Run until told to stop (and, when supervising, until the relay has drained)."""
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        # One holder per host: a second one would take the socket from the first, and
        # the host's sandboxes would have two owners.
        lock = exclusive_lock(self.socket_path.with_suffix(".lock"))
        if lock is None:
            raise SystemExit(f"another PTY holder already runs for {self.socket_path.parent.name} "
                             f"({self.socket_path}): stop it first")
        if self.argv:
            _prctl(PR_SET_CHILD_SUBREAPER, 1)
        self.socket_path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old_umask = os.umask(0o177)  # root only: whoever reaches it can type into every shell
        try:
            listener.bind(str(self.socket_path))
        finally:
            os.umask(old_umask)
        listener.listen(64)
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno())
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: None)  # handled from the wake-up fd
        self.sel.register(listener, selectors.EVENT_READ, "listen")
        self.sel.register(wake_r, selectors.EVENT_READ, "signal")
        if self.argv:
            self._spawn()
        log.info("holding PTYs on %s", self.socket_path)
        try:
            while True:
                if self.stopping and (self.child is None or time.monotonic() > self.stop_deadline):
                    break
                if self.restart_at is not None and time.monotonic() >= self.restart_at:
                    self._spawn()
                if self.beat is not None and self.beat.due() == 0.0:
                    self.beat.beat()
                timeout = 1.0 if self.restart_at is None else max(0.0, self.restart_at - time.monotonic())
                if self.beat is not None:
                    timeout = min(timeout, self.beat.due())
                for key, _ in self.sel.select(timeout):
                    if key.data == "listen":
                        conn, _ = listener.accept()
                        self.sel.register(conn, selectors.EVENT_READ, "conn")
                    elif key.data == "signal":
                        for signum in wake_r.recv(256):
                            self._on_signal(signum)
                    else:
                        self._handle(key.fileobj)  # type: ignore[arg-type]
                self._reap()  # a SIGCHLD may have been coalesced with another signal
        finally:
            if self.child is not None and self.child.poll() is None:
                self.child.kill()
            for sid in list(self.fds):
                self.drop(sid)
            if self.beat is not None:
                self.beat.stop()
            listener.close()
            self.socket_path.unlink(missing_ok=True)


# ---- the client side, used by the relay -----------------------------------------
class HolderClient:
    """Blocking calls to a host's holder (a local socket: microseconds)."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def _call(self, req: dict, fd: int | None = None) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))] if fd is not None else []
            sock.sendmsg([json.dumps(req).encode()], anc)
            return json.loads(sock.recv(MSG_BYTES))

    def put(self, sid: str, fd: int) -> None:
        """Give the holder a copy of sid's PTY master."""
        self._call({"op": "put", "sid": sid}, fd)

    def drop(self, sid: str) -> None:
        """The sandbox is gone: the holder closes its copy."""
        self._call({"op": "drop", "sid": sid})

    def take(self) -> dict[str, int]:
        """Copies of every PTY master the holder keeps, by session id (the holder keeps its own)."""
        out: dict[str, int] = {}
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
            sock.settimeout(10)
            sock.connect(str(self.socket_path))
            sock.send(json.dumps({"op": "take"}).encode())
            while True:
                msg, anc, _flags, _addr = sock.recvmsg(MSG_BYTES, socket.CMSG_SPACE(CHUNK * 4))
                fds = array.array("i")
                for level, kind, data in anc:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
                resp = json.loads(msg)
                out.update(zip(resp["sids"], fds))
                if not resp.get("more"):
                    return out


class _JsonLines(logging.Formatter):
    """One JSON object per line, with the fields the rest of the lab's logs carry."""

    def __init__(self, host: str) -> None:
        super().__init__()
        self.host = host

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"level": record.levelname, "logger": record.name, "message": record.getMessage(),
                           "service": "ptyhold", "host": self.host,
                           "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "+00:00"},
                          ensure_ascii=False)


def main(argv: list[str] | None = None) -> int:
    """`python -m sandbox.relay.holder --socket PATH [--redis URL --beat-key KEY] [-- RELAY ARGV…]`."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.relay.holder", description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket", required=True, type=Path, help="the holder's control socket")
    parser.add_argument("--redis", help="redis:// URL to keep a heartbeat key in")
    parser.add_argument("--beat-key", help="the heartbeat key (with --redis)")
    parser.add_argument("relay", nargs=argparse.REMAINDER, help="-- the relay command to supervise")
    args = parser.parse_args(argv)
    relay = args.relay[1:] if args.relay[:1] == ["--"] else args.relay
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("LOG_FORMAT", "") == "json":  # production's log pipeline (docs/operations.md "Logs")
        handler.setFormatter(_JsonLines(os.environ.get("LAB_HOST_NAME", "")))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s holder %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    beat = Beat(args.redis, args.beat_key) if args.redis and args.beat_key else None
    Holder(args.socket, relay, beat).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
