"""The container layer as a real layer: a checkpoint (or a commit) turns a sandbox's
upperdir into an OCI changeset layer in the image store and tags an image of the
sandbox's stack plus that layer, as `docker commit` does.

The upperdir is read with the sandbox frozen (sandbox/freeze.py): the layer is the
container layer as it was at one instant, as `docker commit` (which pauses by default)
makes it. That is the guarantee a power cut gives, not more: every write the sandbox's
processes made is wholly in it or wholly not, but a program halfway through a series of
writes is caught halfway. Checks and setups that start meanwhile wait for the thaw.
"""
from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sandbox.config import HostConfig
from sandbox.exceptions import SandboxError
from sandbox.freeze import frozen
from sandbox.images.changeset import create_layer
from sandbox.images.exceptions import LayerError
from sandbox.images.store import Image, ImageStore
from sandbox.inside.layers import session_stack
from sandbox.inside.squash import squash_into
from sandbox.snapshots import Layout

# overlayfs refuses more lowerdirs than this (and the mount data must fit in a page).
MAX_LAYERS = 120
# history created_by of a checkpoint's layer (labs.inside writes it).
CHECKPOINT_PREFIX = "lab checkpoint "
# Should an entry vanish under the walk all the same, read it again this often.
LIVE_TRIES = 3


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _trailing_checkpoints(created_by: list[str]) -> int:
    """How many layers at the top of a stack are checkpoints (made by upper_commit)."""
    count = 0
    for made in reversed(created_by):
        if not made.startswith(CHECKPOINT_PREFIX):
            break
        count += 1
    return count


def upper_commit(cfg: HostConfig, layout: Layout, *, ref: str, created_by: str,
                 comment: str = "", author: str = "", squash_at: int = 0) -> tuple[Image, float]:
    """Tag `ref` as the sandbox's stack plus its container layer; (image, seconds the
    layer tar took).
    With `squash_at`, a checkpoint that would make more than that many checkpoint layers
    in a row (rewind, checkpoint, rewind…) squashes them and the upper into one layer."""
    store = ImageStore(cfg.images_dir, uid_base=cfg.uid_base, id_count=cfg.id_count)
    stack = session_stack(store, layout)
    # The upperdir (and stack.dirs, idmapped) are owned by the session's range; the tar
    # has container ids (0…), as every OCI layer.
    ids = layout.session_ids() or cfg.uid_base
    trailing = _trailing_checkpoints(stack.created_by)
    squash = bool(squash_at) and trailing + 1 > squash_at
    keep = len(stack.layers) - trailing if squash else len(stack.layers)
    if keep + 1 > MAX_LAYERS:
        raise SandboxError(f"这个沙箱已经叠了 {len(stack.layers)} 层，overlayfs 最多 {MAX_LAYERS} 层。"
                           f"This sandbox already stacks {len(stack.layers)} layers; overlayfs takes at most {MAX_LAYERS}: "
                           "reset it to start again from the lab's image.")
    with store.writing(), store.tempdir("squash-") as staging:
        fd, tmp = tempfile.mkstemp(dir=store.tmp, prefix="upper-")
        try:
            started = time.monotonic()
            with os.fdopen(fd, "wb") as out, frozen(cfg, layout.root.name):
                for attempt in range(LIVE_TRIES):
                    try:
                        source = layout.upper
                        if squash:
                            shutil.rmtree(staging)
                            staging.mkdir()
                            squash_into(staging, [*stack.dirs, layout.upper], keep, uid=ids)
                            source = staging
                        # Device nodes other than whiteouts cannot be made in the sandbox; skip any.
                        create_layer(source, out, uid_base=ids, id_count=cfg.id_count, devices="skip")
                        break
                    except (LayerError, SandboxError, FileNotFoundError):
                        # The trainee removed something while it was read: read it again.
                        if attempt == LIVE_TRIES - 1:
                            raise
                        out.seek(0)
                        out.truncate()
            seconds = time.monotonic() - started
            parent = stack.layers[keep - 1].chain_id if keep else None
            layer = store.add_layer(Path(tmp), parent)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if squash:
            comment = f"{comment}; squashes {trailing} checkpoint layers and the container layer".lstrip("; ")
        config = _next_config(store.read_json(stack.config_digest), layer.diff_id, created_by, comment, author,
                              drop=len(stack.layers) - keep)
        return store.commit(ref, config, [*stack.layers[:keep], layer]), seconds


def _next_config(base: dict[str, Any], diff_id: str, created_by: str, comment: str, author: str,
                 *, drop: int = 0) -> dict[str, Any]:
    """The image config `docker commit` would write: one more diff_id and history entry
    (after dropping the top `drop` layers' ones, which a squash replaces)."""
    config = copy.deepcopy(base)
    if drop:
        rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        rootfs["diff_ids"] = rootfs["diff_ids"][:-drop]
        history, kept, dropped = config.get("history", []), [], 0
        for entry in reversed(history):
            if dropped < drop and not entry.get("empty_layer"):
                dropped += 1
                continue
            kept.append(entry)
        config["history"] = kept[::-1]
    now = _now()
    config["created"] = now
    if author:
        config["author"] = author
    config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(diff_id)
    entry = {"created": now, "created_by": created_by}
    if comment:
        entry["comment"] = comment
    if author:
        entry["author"] = author
    config.setdefault("history", []).append(entry)
    return config
