"""The anchors for the terminal figures, run beside the lab in the same process tree:
terminado (Jupyter's direct PTY ⇄ WebSocket bridge, no Redis) and a bare PTY.

All three terminals run the same shell, Debian's busybox `sh` (the sandbox's shell
is busybox ash too), so they do the same echo work and the ratio isolates the path.
Run as `python -m bench.baselines <port>` this module is the terminado server.
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

from bench.env import free_port, wait_for
from sandbox.relay.spawn import die_with_parent

SHELL = ["/bin/busybox", "sh"]
PROMPT = b"bench# "
DSR = b"\x1b[6n"  # "where is the cursor?", sent by ash after each prompt


def shell_env() -> dict[str, str]:
    """The environment of the anchor shells: a fixed prompt, no profile."""
    env = {k: v for k, v in os.environ.items() if k not in ("ENV", "PS1", "PROMPT_COMMAND")}
    env.update(PS1=PROMPT.decode(), TERM="xterm-256color", HOME="/tmp", LANG="C.UTF-8")
    return env


class TerminadoServer:
    """`python -m bench.baselines <port>` in a subprocess that dies with the bench."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.baselines", str(self.port)],
                                     cwd=Path(__file__).resolve().parent.parent, env=shell_env(),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=die_with_parent)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"terminado server exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                import socket

                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(up, timeout=20, what="terminado server")

    def connect(self) -> "TerminadoConn":
        """A new terminal (UniqueTermManager: one shell per connection)."""
        from websockets.sync.client import connect

        return TerminadoConn(connect(f"ws://127.0.0.1:{self.port}/websocket", open_timeout=10, max_size=None,
                                     compression=None))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class TerminadoConn:
    """terminado's protocol: JSON ["stdin", text] in, ["stdout", text] out."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.frames = 0
        self.ws.send(json.dumps(["set_size", 24, 80, 600, 800]))

    def send(self, data: bytes) -> None:
        self.ws.send(json.dumps(["stdin", data.decode()]))

    def recv(self, timeout: float) -> bytes | None:
        msg = json.loads(self.ws.recv(timeout=timeout))
        if msg[0] == "stdout":
            self.frames += 1
            return msg[1].encode()
        return None

    def close(self) -> None:
        self.ws.close()


class BarePty:
    """pty.openpty + the shell: write a byte to the master, read the echo."""

    def __init__(self) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, b"\x18\x00\x50\x00\x00\x00\x00\x00")

        def child() -> None:
            die_with_parent()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # so ^C reaches the foreground job

        self.proc = subprocess.Popen(SHELL, stdin=slave, stdout=slave, stderr=slave, env=shell_env(),
                                     start_new_session=True, preexec_fn=child, close_fds=True)
        os.close(slave)
        self.fd = master
        self.frames = 0

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def recv(self, timeout: float) -> bytes | None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            raise TimeoutError
        self.frames += 1
        return os.read(self.fd, 65536)

    def close(self) -> None:
        os.close(self.fd)
        self.proc.kill()
        self.proc.wait()


def serve(port: int) -> None:
    """The terminado app: TermSocket at /websocket, one fresh shell per connection."""
    import tornado.ioloop
    import tornado.web
    from terminado import TermSocket, UniqueTermManager

    manager = UniqueTermManager(shell_command=SHELL, max_terminals=None)
    app = tornado.web.Application([(r"/websocket", TermSocket, {"term_manager": manager})],
                                  websocket_max_message_size=64 << 20)
    app.listen(port, "127.0.0.1")
    tornado.ioloop.IOLoop.current().start()


def drain(conn, quiet: float = 0.2) -> None:
    """Read until nothing arrives for `quiet` seconds."""
    while True:
        try:
            conn.recv(quiet)
        except TimeoutError:
            return


def wait_prompt(conn, prompt: bytes, timeout: float = 20) -> None:
    """Read until the output ends with the prompt (and busybox's cursor query, ESC [6n,
    which nobody answers here: ash then assumes the prompt's own length)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.removesuffix(DSR).endswith(prompt):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no prompt {prompt!r}: {buf[-200:]!r}")
        try:
            buf = (buf + (conn.recv(left) or b""))[-4096:]
        except TimeoutError:
            continue


if __name__ == "__main__":
    serve(int(sys.argv[1]))
