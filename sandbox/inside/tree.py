"""One directory of a sandbox's merged root, as `dive` shows an image: every entry with
the layer it comes from and the lower layers whose copies it hides — resolved on the
host from the lowerdirs and the upperdir, as overlayfs merges them."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Sequence

from sandbox.exceptions import SandboxError
from sandbox.inside.changes import is_opaque, is_whiteout

MAX_ENTRIES = 2000


def _kind(st: os.stat_result) -> str:
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    return "other"


def _parts(path: str) -> tuple[str, ...]:
    parts = tuple(p for p in path.split("/") if p not in ("", "."))
    if ".." in parts or any("\x00" in p for p in parts):
        raise SandboxError("路径不能含有 ..。A path may not contain '..'.")
    return parts


def _dirs_of(layers: Sequence[Path], parts: tuple[str, ...]) -> list[tuple[int, str, bool]]:
    """(layer index, host directory, opaque) of every layer that takes part in the merged
    directory at `parts`, top first; `layers` are bottom -> top (the upperdir last)."""
    out = []
    for index in range(len(layers) - 1, -1, -1):
        path, blocked, opaque = str(layers[index]), False, False
        for i, part in enumerate(parts):
            path = os.path.join(path, part)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                path = ""
                break
            if is_whiteout(st) or not stat.S_ISDIR(st.st_mode):
                blocked = True  # a whiteout or a file hides the directory of every lower layer
                break
            if is_opaque(path):
                opaque = True  # this layer's copy is the last one that counts
        if blocked:
            break
        if path:
            out.append((index, path, opaque))
            if opaque:
                break
    return out


def merged_dir(layers: Sequence[Path], path: str, *, limit: int = MAX_ENTRIES) -> dict[str, Any]:
    """{"path", "entries": [{"name", "type", "size", "layer", "hides", "deleted"}], "truncated"}:
    `layer` is the index (bottom = 0, the upperdir = len(layers) - 1) the entry comes from,
    `hides` the lower layers holding a copy it hides; a whiteout on top shows as deleted."""
    parts = _parts(path)
    dirs = _dirs_of(layers, parts)
    if not dirs:
        raise SandboxError(f"{'/' + '/'.join(parts)}：没有这个目录。No such directory: {'/' + '/'.join(parts)}")
    seen: dict[str, dict[str, Any]] = {}
    truncated = False
    for index, host_dir, _ in dirs:
        try:
            names = sorted(os.listdir(host_dir))
        except OSError:
            continue
        for name in names:
            try:
                st = os.lstat(os.path.join(host_dir, name))
            except OSError:
                continue
            entry = seen.get(name)
            if entry is None:
                if len(seen) >= limit:
                    truncated = True
                    continue
                deleted = is_whiteout(st)
                opaque = stat.S_ISDIR(st.st_mode) and is_opaque(os.path.join(host_dir, name))
                seen[name] = {"name": name, "type": "deleted" if deleted else _kind(st),
                              "size": st.st_size if stat.S_ISREG(st.st_mode) else 0,
                              "layer": index, "hides": [], "deleted": deleted,
                              # Below a file, a whiteout or an opaque directory, nothing merges.
                              "closed": not stat.S_ISDIR(st.st_mode) or opaque}
                continue
            if not entry["closed"] and stat.S_ISDIR(st.st_mode):
                # Directories merge, nothing is hidden; below an opaque copy nothing merges.
                entry["closed"] = is_opaque(os.path.join(host_dir, name))
                continue
            entry["closed"] = True
            if not is_whiteout(st):
                entry["hides"].append(index)
    entries = [e for e in seen.values() if not (e["deleted"] and not e["hides"])]
    for e in entries:
        e.pop("closed")
    return {"path": "/" + "/".join(parts), "entries": sorted(entries, key=lambda e: e["name"]),
            "truncated": truncated}
