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

import os
import select
import signal
import subprocess
import threading
from pathlib import Path

from sandbox.config import HostConfig
from sandbox.images.store import ImageStore
from sandbox.relay.client import relay_call
from sandbox.runtime import runc_delete
from sandbox.service import SandboxRequest, layout_for, sandbox_run, sandbox_stop, session_uid
from sandbox.snapshots import snapshot_discard_aside, snapshot_restack

KILL_WAIT = 2.0


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts, as runc counts it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def _init_pid(cfg: HostConfig, sid: str) -> int:
    try:
        return int((layout_for(cfg, sid).root / "init.pid").read_text())
    except (OSError, ValueError):
        return 0


def _kill_init(cfg: HostConfig, sid: str, pid: int) -> None:
    """SIGKILL the sandbox's init, which ends every process of its PID namespace, and wait
    until it is dead. Sent directly through a pidfd when the pid is still the sandbox's
    (its cgroup says so), which saves a runc process; otherwise through `runc kill`."""
    cgroup = f"{cfg.cgroup_parent}/{sid}"
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return  # gone already
    try:
        try:
            ours = any(line.split(":", 2)[2] == cgroup for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines())
        except (OSError, IndexError):
            ours = False
        if not ours:
            # A pid reused since, or a cgroup path seen otherwise (a cgroup namespace):
            # runc knows its own container; `runc delete --force` afterwards waits for it.
            subprocess.run([cfg.runc, "--root", str(cfg.runc_root), "kill", sid, "KILL"], capture_output=True)
            return
        _unthrottle(cfg, sid)  # dying processes need CPU time: not a throttled cgroup's
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            return  # it exited meanwhile (a zombie waiting for the relay to reap it counts)
        # A pidfd becomes readable when its process has exited.
        select.select([fd], [], [], KILL_WAIT)
    finally:
        os.close(fd)


def _unthrottle(cfg: HostConfig, sid: str) -> None:
    """Lift the CPU quota of a sandbox about to be killed, so that its processes, once
    killed, are not made to wait for the next period to exit (best effort)."""
    rel = f"{cfg.cgroup_parent.strip('/')}/{sid}"
    for path, value in ((f"/sys/fs/cgroup/cpu/{rel}/cpu.cfs_quota_us", "-1"), (f"/sys/fs/cgroup/{rel}/cpu.max", "max")):
        try:
            with open(path, "w") as f:
                f.write(value)
            return
        except OSError:
            continue


def _relay_close(cfg: HostConfig, sid: str) -> None:
    # The relay lets go of the terminal first: a shell that ends under it is "exited".
    try:
        relay_call(cfg, "close", sid=sid, timeout=5)
    except Exception:  # the relay may be gone; runc_delete copes with that too
        pass


def _kill_and_delete(cfg: HostConfig, sid: str) -> None:
    pid = _init_pid(cfg, sid)
    if pid:
        _kill_init(cfg, sid, pid)
    runc_delete(cfg, sid)  # stopped now: runc destroys it without its kill loop


def container_kill(cfg: HostConfig, sid: str) -> None:
    """Let go of the terminal, kill the sandbox and see it dead, then delete the stopped
    container (at once: no kill loop)."""
    _relay_close(cfg, sid)
    _kill_and_delete(cfg, sid)


def sandbox_stop_quick(cfg: HostConfig, sid: str) -> None:
    """sandbox_stop, with the container killed and seen dead first."""
    container_kill(cfg, sid)
    sandbox_stop(cfg, sid)


def sandbox_rewind(cfg: HostConfig, req: SandboxRequest) -> int:
    """Restart a live sandbox on `req.image` (a checkpoint): its layers under a fresh
    upperdir, the volumes kept in place; returns the new init's pid. Call rewind_cleanup
    once the new sandbox is announced. On failure nothing of the session is left.

    The old container's death and deletion overlap the restack: the host's mounts are
    not the ones the dying processes use (they have their own mount namespace), and the
    old upperdir they may still write to is already set aside. Only `runc run` (same id,
    same cgroup) waits for the deletion.
    """
    store = ImageStore(cfg.images_dir, uid_base=cfg.uid_base, id_count=cfg.id_count)
    image = store.resolve(req.image)  # before anything stops: a missing image changes nothing
    layout = layout_for(cfg, req.sid)
    uid = session_uid(cfg, req.sid)  # the same range: the volumes kept in place are its
    failed: list[BaseException] = []

    def kill() -> None:
        try:
            _kill_and_delete(cfg, req.sid)
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)

    try:
        _relay_close(cfg, req.sid)  # before the kill, so the shell's end is no "exited"
        killer = threading.Thread(target=kill, name=f"rewind-kill-{req.sid}")
        killer.start()
        try:
            ranges = cfg.uid_ranges()
            snapshot_restack(image=image, layout=layout, layers_root=cfg.images_dir / "layers", uid=uid,
                             stored_uid=cfg.uid_base, id_count=cfg.id_count, pins=ranges.pins if ranges else None)
        finally:
            killer.join()
        if failed:
            raise failed[0]
        return sandbox_run(cfg, req, layout, uid=uid)
    except BaseException:
        sandbox_stop(cfg, req.sid)
        raise


def rewind_cleanup(cfg: HostConfig, sid: str) -> None:
    """Remove the container layers rewinds set aside (after the new prompt)."""
    snapshot_discard_aside(layout=layout_for(cfg, sid))
