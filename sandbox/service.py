"""What the rest of the project calls: start, exec in, reset, stop and sweep sandboxes.

Each function is idempotent for a given session id, so a retried Celery task does
no harm, and each leaves nothing half-made behind when it fails.
"""
from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sandbox.checklang import with_lang
from sandbox.idmap import shift_tree
from sandbox.config import HostConfig
from sandbox.images.store import ImageStore
from sandbox.quotas import deny_new_ptys, host_prepare
from sandbox.relay.client import relay_call
from sandbox.runtime import ExecResult, Limits, runc_delete, runc_exec, runc_list, sandbox_spec, write_spec
from sandbox.snapshots import Layout, leftover_sessions, snapshot_create, snapshot_remove

log = logging.getLogger(__name__)
RELAY_WAIT = 20.0


@dataclass(frozen=True)
class SandboxRequest:
    """What a sandbox is made of."""

    sid: str
    image: str
    hostname: str
    limits: Limits
    cols: int = 80
    rows: int = 24
    # The trainee's volumes (/root, /tmp) to start with: a directory holding home/ and tmp/.
    volumes_from: str = ""
    # A warm-pool sandbox (sandbox/pool.py): no recording and no idle clock until assigned.
    pooled: bool = False


def volumes_save(cfg: HostConfig, sid: str, dest: Path) -> None:
    """Copy a live sandbox's volumes (home/ and tmp/ on its capped tmpfs) to dest, owned
    by the store's range (nothing on disk keeps the session's range once it is freed)."""
    layout = layout_for(cfg, sid)
    ids = layout.session_ids()
    dest.mkdir(mode=0o700)
    for src, name in ((layout.home, "home"), (layout.tmp, "tmp")):
        if src.is_dir():
            subprocess.run(["cp", "-a", f"{src}/.", str(dest / name)], check=True, capture_output=True)
            if ids is not None:
                shift_tree(dest / name, src=ids, dst=cfg.uid_base, count=cfg.id_count)


def _owner(cfg: HostConfig, sid: str) -> str:
    """The uid range owner name of a session of this host."""
    return f"{cfg.host}/{sid}"


def layout_for(cfg: HostConfig, sid: str) -> Layout:
    """The session directory of a sandbox on this host."""
    if not sid.isalnum():
        raise ValueError(f"bad session id {sid!r}")
    return Layout(cfg.sessions_dir / sid)


def sandbox_start(cfg: HostConfig, req: SandboxRequest) -> int:
    """Make the overlay root and bundle, then have the relay run it; returns init's pid."""
    store = ImageStore(cfg.images_dir, uid_base=cfg.uid_base, id_count=cfg.id_count)
    image = store.resolve(req.image)
    layout = layout_for(cfg, req.sid)
    if req.sid in {c["id"] for c in runc_list(cfg)}:
        runc_delete(cfg, req.sid)
    host_prepare(cfg)
    ranges = cfg.uid_ranges()
    # Per-session range: root in this sandbox is `uid` on the host, and no other live one is.
    uid = ranges.allocate(_owner(cfg, req.sid), home=layout.root).base if ranges else cfg.uid_base
    try:
        snapshot_create(image=image, layout=layout, layers_root=cfg.images_dir / "layers",
                        disk_mb=req.limits.disk_mb, uid=uid, stored_uid=cfg.uid_base, id_count=cfg.id_count,
                        pins=ranges.pins if ranges else None)
    except BaseException:
        if ranges:
            ranges.release(_owner(cfg, req.sid))
        raise
    try:
        for name, dst in (("home", layout.home), ("tmp", layout.tmp)):
            src = Path(req.volumes_from) / name if req.volumes_from else None
            if src is not None and src.is_dir():  # within the same disk cap, or the start fails
                subprocess.run(["cp", "-a", f"{src}/.", str(dst)], check=True, capture_output=True)
                shift_tree(dst, src=cfg.uid_base, dst=uid, count=cfg.id_count)  # saved in the store's range
        return sandbox_run(cfg, req, layout, uid=uid)
    except BaseException:
        sandbox_stop(cfg, req.sid)
        raise


def session_uid(cfg: HostConfig, sid: str) -> int:
    """The host uid that root of a live session's sandbox is (its range's base, kept while
    the session lives: a rewind restarts the sandbox in the same range)."""
    ranges = cfg.uid_ranges()
    return ranges.allocate(_owner(cfg, sid), home=layout_for(cfg, sid).root).base if ranges else cfg.uid_base


def sandbox_run(cfg: HostConfig, req: SandboxRequest, layout: Layout, *, uid: int) -> int:
    """Write the bundle's config.json for a ready root (its root is host `uid`) and have the
    relay run it; init's pid."""
    spec = sandbox_spec(
        sid=req.sid, rootfs=layout.rootfs, views=layout.views, hostname=req.hostname,
        uid=uid, id_count=cfg.id_count, cgroup_parent=cfg.cgroup_parent, limits=req.limits,
        volumes=layout.volumes(),
        cols=req.cols, rows=req.rows,
    )
    write_spec(layout.config, spec)
    # A relay being restarted by its holder is back within seconds: wait for it.
    pid = relay_call(cfg, "run", wait=RELAY_WAIT, sid=req.sid, bundle=str(layout.root), cols=req.cols, rows=req.rows,
                     **({"pool": True} if req.pooled else {}))["pid"]
    if not deny_new_ptys(cfg, req.sid):
        log.warning("sandbox %s may open PTYs: no cgroup v1 devices controller", req.sid)
    return pid


def sandbox_exec(cfg: HostConfig, sid: str, script: str, *, timeout: float = 10.0, lang: str | None = None,
                 env: dict[str, str] | None = None, check: bool = False) -> ExecResult:
    """Run a script inside a live sandbox (checks, setup, solutions) with the host's shell,
    in the trainee's language; check=True also kills everything it started and refuses a
    forged result."""
    script, lang_env = with_lang(script, lang)
    return runc_exec(cfg, sid, script, timeout=timeout, env={**lang_env, **(env or {})}, check=check)


def sandbox_stop(cfg: HostConfig, sid: str) -> None:
    """Close the terminal, delete the container, unmount and remove the session directory."""
    try:
        relay_call(cfg, "close", sid=sid, timeout=5)
    except Exception as exc:  # the relay may be gone; the container must still go
        log.info("relay close %s: %s", sid, exc)
    runc_delete(cfg, sid)
    snapshot_remove(layout=layout_for(cfg, sid))
    ranges = cfg.uid_ranges()
    # Only now, container deleted and tmpfs gone: free once no process of the range is left.
    if ranges and not ranges.release(_owner(cfg, sid)):
        log.warning("uid range of %s kept in quarantine: processes of it are still running", sid)


def host_sweep(cfg: HostConfig, *, keep: set[str]) -> list[str]:
    """Remove every container and session directory on this host not in keep."""
    removed = []
    for c in runc_list(cfg):
        if c["id"] not in keep:
            runc_delete(cfg, c["id"])
            removed.append(c["id"])
    for path in leftover_sessions(cfg.sessions_dir, sorted(keep)):
        snapshot_remove(layout=Layout(path))
        if path.name not in removed:
            removed.append(path.name)
    ranges = cfg.uid_ranges()
    if ranges:  # after a crash: ranges of sessions that are gone, once nothing of them runs
        ranges.recover(host=cfg.host, keep=keep)
    return removed