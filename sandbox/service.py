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
    snapshot_create(image=image, layout=layout, layers_root=cfg.images_dir / "layers",
                    disk_mb=req.limits.disk_mb, uid=cfg.uid_base)
    try:
        for name, dst in (("home", layout.home), ("tmp", layout.tmp)):
            src = Path(req.volumes_from) / name if req.volumes_from else None
            if src is not None and src.is_dir():  # within the same disk cap, or the start fails
                subprocess.run(["cp", "-a", f"{src}/.", str(dst)], check=True, capture_output=True)
        return sandbox_run(cfg, req, layout)
    except BaseException:
        sandbox_stop(cfg, req.sid)
        raise


def sandbox_run(cfg: HostConfig, req: SandboxRequest, layout: Layout) -> int:
    """Write the bundle's config.json for a ready root and have the relay run it; init's pid."""
    spec = sandbox_spec(
        sid=req.sid, rootfs=layout.rootfs, views=layout.views, hostname=req.hostname,
        uid=cfg.uid_base, id_count=cfg.id_count, cgroup_parent=cfg.cgroup_parent, limits=req.limits,
        volumes=layout.volumes(),
        cols=req.cols, rows=req.rows,
    )
    write_spec(layout.config, spec)
    # A relay being restarted by its holder is back within seconds: wait for it.
    pid = relay_call(cfg, "run", wait=RELAY_WAIT, sid=req.sid, bundle=str(layout.root), cols=req.cols, rows=req.rows)["pid"]
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
    return removed