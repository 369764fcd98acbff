"""Stopping a sandbox that is about to start again on a checkpoint, without waiting out
runc's kill loop: `runc delete --force` of a running container signals it and then
sleeps 100 ms before it looks again; a container already stopped is destroyed at once."""
from __future__ import annotations

import subprocess
import time

from sandbox.config import HostConfig
from sandbox.relay.client import relay_call
from sandbox.service import layout_for, sandbox_stop

KILL_WAIT = 2.0


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts, as runc counts it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def sandbox_stop_quick(cfg: HostConfig, sid: str) -> None:
    """sandbox_stop, with the container killed and seen dead first (all of it: SIGKILL
    to the init of a PID namespace ends every process in it)."""
    layout = layout_for(cfg, sid)
    try:
        pid = int((layout.root / "init.pid").read_text())
    except (OSError, ValueError):
        pid = 0
    # The relay lets go of the terminal first: a shell that ends under it is "exited".
    try:
        relay_call(cfg, "close", sid=sid, timeout=5)
    except Exception:  # the relay may be gone; sandbox_stop below copes with that too
        pass
    if pid:
        subprocess.run([cfg.runc, "--root", str(cfg.runc_root), "kill", sid, "KILL"], capture_output=True)
        deadline = time.monotonic() + KILL_WAIT
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.002)
    sandbox_stop(cfg, sid)  # the container is stopped now: runc destroys it without waiting
