"""Rewinding a sandbox: the same session restarted on a checkpoint's image, as fast as a
fresh start. Only what the new prompt needs is on the critical path:

- the old container is killed and seen dead without runc's 100 ms kill loop (`runc
  delete --force` of a running container signals it, then sleeps before it looks again;
  a stopped one is destroyed at once);
- the session's tmpfs stays mounted, so the trainee's volumes (/root, /tmp) stay where
  they are (no copy out and back); only the overlay and the views are remounted;
- the old upperdir and workdir are renamed aside on that tmpfs and removed after the new
  sandbox is up (`rewind_cleanup`). They live inside the session directory, so a worker
  killed at any point leaves nothing that the session's stop or the host's reconcile
  does not remove with the rest of it.
"""
from __future__ import annotations

import subprocess
import time

from sandbox.config import HostConfig
from sandbox.images.store import ImageStore
from sandbox.relay.client import relay_call
from sandbox.runtime import runc_delete
from sandbox.service import SandboxRequest, layout_for, sandbox_run, sandbox_stop
from sandbox.snapshots import snapshot_discard_aside, snapshot_restack

KILL_WAIT = 2.0


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts, as runc counts it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def container_kill(cfg: HostConfig, sid: str) -> None:
    """Let go of the terminal, SIGKILL the sandbox's init (which ends every process of its
    PID namespace) and wait until it is dead, then delete the stopped container."""
    layout = layout_for(cfg, sid)
    try:
        pid = int((layout.root / "init.pid").read_text())
    except (OSError, ValueError):
        pid = 0
    # The relay lets go of the terminal first: a shell that ends under it is "exited".
    try:
        relay_call(cfg, "close", sid=sid, timeout=5)
    except Exception:  # the relay may be gone; runc_delete below copes with that too
        pass
    if pid:
        subprocess.run([cfg.runc, "--root", str(cfg.runc_root), "kill", sid, "KILL"], capture_output=True)
        deadline = time.monotonic() + KILL_WAIT
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.002)
    runc_delete(cfg, sid)  # stopped now: runc destroys it without waiting


def sandbox_stop_quick(cfg: HostConfig, sid: str) -> None:
    """sandbox_stop, with the container killed and seen dead first."""
    container_kill(cfg, sid)
    sandbox_stop(cfg, sid)


def sandbox_rewind(cfg: HostConfig, req: SandboxRequest) -> int:
    """Restart a live sandbox on `req.image` (a checkpoint): its layers under a fresh
    upperdir, the volumes kept in place; returns the new init's pid. Call rewind_cleanup
    once the new sandbox is announced. On failure nothing of the session is left."""
    store = ImageStore(cfg.images_dir, uid_base=cfg.uid_base, id_count=cfg.id_count)
    image = store.resolve(req.image)  # before anything stops: a missing image changes nothing
    layout = layout_for(cfg, req.sid)
    try:
        container_kill(cfg, req.sid)
        snapshot_restack(image=image, layout=layout, layers_root=cfg.images_dir / "layers", uid=cfg.uid_base)
        return sandbox_run(cfg, req, layout)
    except BaseException:
        sandbox_stop(cfg, req.sid)
        raise


def rewind_cleanup(cfg: HostConfig, sid: str) -> None:
    """Remove the container layers rewinds set aside (after the new prompt)."""
    snapshot_discard_aside(layout=layout_for(cfg, sid))
