"""What the host tasks call: one function per view of a running sandbox."""
from __future__ import annotations

from typing import Any

from sandbox.config import HostConfig
from sandbox.images.store import ImageStore
from sandbox.inside import container
from sandbox.inside.changes import upper_bytes, upper_changes
from sandbox.inside.layers import session_stack
from sandbox.inside.tree import merged_dir
from sandbox.service import layout_for

VIEWS = ("layers", "changes", "container")


def _store(cfg: HostConfig) -> ImageStore:
    return ImageStore(cfg.images_dir, uid_base=cfg.uid_base, id_count=cfg.id_count)


def inside_view(cfg: HostConfig, sid: str, views: tuple[str, ...] = VIEWS) -> dict[str, Any]:
    """The asked views of a sandbox of this host: {"layers": …, "changes": …, "container": …}."""
    layout = layout_for(cfg, sid)
    stack = session_stack(_store(cfg), layout)
    out: dict[str, Any] = {}
    if "layers" in views:
        out["layers"] = {"layers": stack.view(), "upper": {"bytes": upper_bytes(layout.upper)}}
    if "changes" in views:
        # Top first, as overlayfs stacks them.
        changes, truncated = upper_changes(layout.upper, list(reversed(stack.dirs)))
        out["changes"] = {"changes": changes, "truncated": truncated}
    if "container" in views:
        pid = container.init_pid(layout)
        out["container"] = {
            "namespaces": container.namespaces(pid),
            "cgroups": container.cgroups(pid),
            "mounts": container.mounts(pid, stack, layout),
            "processes": container.processes(pid, layout.session_ids() or cfg.uid_base),
        }
    return out


def inside_tree(cfg: HostConfig, sid: str, path: str) -> dict[str, Any]:
    """One directory of the sandbox's merged root: each entry's layer and what it hides
    (layers numbered bottom = 0; the container layer is the last)."""
    layout = layout_for(cfg, sid)
    stack = session_stack(_store(cfg), layout)
    out = merged_dir([*stack.dirs, layout.upper], path)
    out["layers"] = len(stack.dirs) + 1
    return out
