"""A sandbox's root filesystem: the image's layers as overlayfs lowerdirs, a private
upperdir and workdir on a size-capped tmpfs, volumes for the trainee's home and /tmp on
that same tmpfs (so one cap covers all three), and read-only views for learning.

Functions here describe mounts as data; `snapshot_create` applies them in order and
`snapshot_remove` undoes them. Nothing is left half-made: a failure unmounts what
was mounted and removes the session directory.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from sandbox.exceptions import SandboxError
from sandbox.idmap import IdShift, userns_open, userns_pinned
from sandbox.mounts import PAGE_LIMIT, Mount, detach, mount, mounts_under, unmount
from sandbox.scripts import TRUSTED_SHELL, trusted_shell

# The init that reaps zombies inside every sandbox (Debian package tini).
INIT_BINARY = Path("/usr/bin/tini-static")


class ImageLike(Protocol):
    """What a snapshot needs from sandbox.images.store.Image."""

    diff_ids: list[str]
    chain_ids: list[str]
    layer_dirs: list[Path]
    lower_links: list[str]

    def inspect(self) -> dict: ...


@dataclass(frozen=True)
class Layout:
    """The paths of one session directory on the host."""

    root: Path

    @property
    def scratch(self) -> Path:
        """tmpfs holding upperdir and workdir; its size is the sandbox's disk limit."""
        return self.root / "rw"

    @property
    def upper(self) -> Path:
        return self.scratch / "upper"

    @property
    def work(self) -> Path:
        return self.scratch / "work"

    @property
    def home(self) -> Path:
        """The trainee's /root: a volume, not part of the container layer."""
        return self.scratch / "home"

    @property
    def tmp(self) -> Path:
        """The sandbox's /tmp: a volume too."""
        return self.scratch / "tmp"

    def volumes(self) -> list[tuple[str, Path]]:
        """(destination inside the sandbox, directory on the host) of each volume.

        Like a Docker volume they bypass the union file system: an overlay upperdir may
        live there (it may not on the overlay root), which is where people type the
        overlayfs experiment, and their writes never reach the container layer.
        """
        return [("/root", self.home), ("/tmp", self.tmp)]

    @property
    def rootfs(self) -> Path:
        """The merged overlay: runc's root.path."""
        return self.root / "rootfs"

    @property
    def views(self) -> Path:
        """Becomes /var/lib/lab inside the sandbox, read-only."""
        return self.root / "lab"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def lowers(self) -> Path:
        """Idmapped mounts of the image's layers, lower/<n> (bottom = 0), with per-session
        uid ranges: the overlay's lowerdirs and the layer views are these."""
        return self.root / "lower"

    def session_ids(self) -> int | None:
        """The host id sandbox root maps to, from the session's config.json (None before)."""
        try:
            return int(json.loads(self.config.read_text())["linux"]["uidMappings"][0]["hostID"])
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return None

    @property
    def layers_file(self) -> Path:
        """chain_ids this session uses, so image gc keeps them."""
        return self.root / "layers.json"


def lower_dirs(*, image: ImageLike, layout: Layout, idmapped: bool) -> list[Path]:
    """The lowerdirs, bottom -> top: the store's layer directories, or the session's
    idmapped mounts of them."""
    if not idmapped:
        return list(image.layer_dirs)
    return [layout.lowers / str(i) for i in range(len(image.layer_dirs))]


def overlay_mount(*, image: ImageLike, layout: Layout, layers_root: Path, idmapped: bool = False) -> Mount:
    """The overlay mount for an image: leftmost lowerdir is the top layer."""
    tail = f"upperdir={layout.upper},workdir={layout.work}"
    lowers = lower_dirs(image=image, layout=layout, idmapped=idmapped)
    absolute = ":".join(str(d) for d in reversed(lowers))
    if len(f"lowerdir={absolute},{tail}") <= PAGE_LIMIT:
        return Mount("overlay", "overlay", layout.rootfs, (f"lowerdir={absolute}", f"upperdir={layout.upper}", f"workdir={layout.work}"))
    if idmapped:  # many layers: lower/<n> relative to the session directory
        return Mount("overlay", "overlay", layout.rootfs,
                     ("lowerdir=" + ":".join(str(d.relative_to(layout.root)) for d in reversed(lowers)),
                      f"upperdir={layout.upper}", f"workdir={layout.work}"), cwd=layout.root)
    # Many layers: short relative links (l/<id>) resolved from the layers root.
    return Mount(
        "overlay", "overlay", layout.rootfs,
        ("lowerdir=" + ":".join(image.lower_links), f"upperdir={layout.upper}", f"workdir={layout.work}"),
        cwd=layers_root,
    )


def idmapped_mounts(*, image: ImageLike, layout: Layout) -> list[Mount]:
    """Each layer directory bound read-only at lower/<n>, its owners mapped to the
    session's range (applied with the session's user namespace: sandbox/idmap.py)."""
    return [Mount("none", str(d), layout.lowers / str(i), ("bind", "ro", "nosuid", "nodev", "idmap"))
            for i, d in enumerate(image.layer_dirs)]


def snapshot_mounts(*, image: ImageLike, layout: Layout, layers_root: Path, disk_mb: int, uid: int,
                    idmapped: bool = False) -> list[Mount]:
    """tmpfs for the writable layer (capped), then the overlay root."""
    return [
        Mount("tmpfs", "lab-rw", layout.scratch, ("nosuid", "nodev", f"size={disk_mb}m", f"nr_inodes={disk_mb * 256}", "mode=0700", f"uid={uid}", f"gid={uid}")),
        overlay_mount(image=image, layout=layout, layers_root=layers_root, idmapped=idmapped),
    ]


def view_mounts(*, image: ImageLike, layout: Layout, idmapped: bool = False) -> list[Mount]:
    """Read-only views under /var/lib/lab: layers, the own upper layer, the init.

    They are mounted on the host, before runc makes the sandbox's namespaces, so the
    kernel locks them read-only there: root in the user namespace cannot remount them.
    """
    ro = ("bind", "ro", "nosuid", "nodev")
    mounts = [Mount("none", str(layout.views), layout.views, ro)]
    for diff_id, layer_dir in zip(image.diff_ids, lower_dirs(image=image, layout=layout, idmapped=idmapped)):
        target = layout.views / "overlay2" / diff_id.split(":", 1)[1] / "diff"
        mounts.append(Mount("none", str(layer_dir), target, ro))
    mounts.append(Mount("none", str(layout.upper), layout.views / "container" / "upper", ro))
    mounts.append(Mount("none", str(INIT_BINARY), layout.views / "bin" / "init", ("bind", "ro", "nosuid", "nodev")))
    # The shell checks and setups run with (sandbox/scripts.py): host-owned, locked.
    mounts.append(Mount("none", str(TRUSTED_SHELL), layout.views / "bin" / "busybox", ("bind", "ro", "nosuid", "nodev")))
    return mounts


def _make_mountpoints(*, image: ImageLike, layout: Layout, uid: int, idmapped: bool = False) -> None:
    """Directories and files the mounts land on, made before anything is mounted."""
    for d in (layout.scratch, layout.rootfs, layout.views / "container" / "upper", layout.views / "bin"):
        d.mkdir(parents=True, exist_ok=True)
    if idmapped:
        for d in lower_dirs(image=image, layout=layout, idmapped=True):
            d.mkdir(parents=True)
    for diff_id in image.diff_ids:
        (layout.views / "overlay2" / diff_id.split(":", 1)[1] / "diff").mkdir(parents=True, exist_ok=True)
    (layout.views / "bin" / "init").touch()
    (layout.views / "bin" / "busybox").touch()
    (layout.views / "image.json").write_text(json.dumps(image.inspect(), indent=2) + "\n")
    layout.layers_file.write_text(json.dumps(list(image.chain_ids)))


def snapshot_create(*, image: ImageLike, layout: Layout, layers_root: Path, disk_mb: int, uid: int,
                    stored_uid: int | None = None, id_count: int = 65536, pins: Path | None = None) -> None:
    """Build the session's root and views; on any failure leave nothing behind. With
    `stored_uid` other than `uid` (per-session ranges), the layers, stored owned by
    `stored_uid`…, are idmapped to `uid`… for this session (no copy), through a user
    namespace pinned in `pins` (made afresh each time without)."""
    idmapped = stored_uid is not None and stored_uid != uid
    if layout.root.exists():
        snapshot_remove(layout=layout)
    layout.root.mkdir(parents=True, mode=0o711)
    layout.root.chmod(0o711)  # sandbox root (an unprivileged host uid) must traverse it
    try:
        trusted_shell()
        _make_mountpoints(image=image, layout=layout, uid=uid, idmapped=idmapped)
        if idmapped:
            _mount_idmapped_lowers(image=image, layout=layout, shift=IdShift(stored=stored_uid, base=uid, count=id_count),
                                   pins=pins)
        scratch, overlay = snapshot_mounts(image=image, layout=layout, layers_root=layers_root, disk_mb=disk_mb, uid=uid,
                                           idmapped=idmapped)
        mount(scratch)
        for d in (layout.upper, layout.work, layout.home, layout.tmp):
            d.mkdir()
            # The upperdir's root becomes "/" in the sandbox, the volumes /root and /tmp:
            # all owned by sandbox root.
            os.chown(d, uid, uid)
        layout.upper.chmod(0o755)
        layout.home.chmod(0o700)
        layout.tmp.chmod(0o1777)
        _mount_stack(image=image, layout=layout, overlay=overlay, idmapped=idmapped)
    except BaseException:
        snapshot_remove(layout=layout)
        raise


def _mount_idmapped_lowers(*, image: ImageLike, layout: Layout, shift: IdShift, pins: Path | None) -> None:
    """The layers bound at lower/<n>, idmapped into the session's range. The mapping lives
    in a user namespace nothing runs in; the mounts keep it."""
    userns = userns_pinned(shift, pins) if pins else userns_open(shift)
    try:
        for m in idmapped_mounts(image=image, layout=layout):
            mount(m, userns=userns)
    finally:
        os.close(userns)


def _mount_stack(*, image: ImageLike, layout: Layout, overlay: Mount, idmapped: bool = False) -> None:
    """The overlay root, then the read-only views over it."""
    mount(overlay)
    for m in view_mounts(image=image, layout=layout, idmapped=idmapped):
        mount(m)


# Where a restack sets the old container layer aside, inside the session's own tmpfs:
# whatever becomes of the worker, it goes with the session directory.
ASIDE_PREFIX = "aside-"
VIEWS_ASIDE_PREFIX = "views-aside-"


def _detach_stack(layout: Layout) -> None:
    """Detach the views and the overlay root, without reading /proc/self/mountinfo (tens
    of milliseconds on a host with a thousand mounts): the mount points are known."""
    views = layout.views
    layers = [views / "overlay2" / d / "diff" for d in _listdir(views / "overlay2")]
    for target in [views / "bin" / "busybox", views / "bin" / "init", views / "container" / "upper",
                   *layers, views, layout.rootfs]:
        detach(target)


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def snapshot_restack(*, image: ImageLike, layout: Layout, layers_root: Path, uid: int,
                     stored_uid: int | None = None, id_count: int = 65536, pins: Path | None = None) -> Path:
    """Put the session's root on another image (a rewind), keeping its tmpfs and volumes.

    The container must be gone. Only the overlay and the views are detached; the old
    upperdir and workdir are renamed aside on the same tmpfs (one rename, no copy), the
    old views directory aside in the session directory, and a fresh set made: removing
    what was set aside is `snapshot_discard_aside`'s job, after the new sandbox is up.
    On failure the whole session directory goes, as snapshot_create's.
    """
    idmapped = stored_uid is not None and stored_uid != uid
    try:
        _detach_stack(layout)  # views first: they hold a bind of the old upperdir
        # Then the idmapped layers under the old overlay; their (now empty) mount points go,
        # with rmdir, never a recursive delete: a layer still mounted there is shared.
        for name in _listdir(layout.lowers):
            detach(layout.lowers / name)
            os.rmdir(layout.lowers / name)
        if layout.lowers.exists():
            os.rmdir(layout.lowers)
        aside = Path(tempfile.mkdtemp(prefix=ASIDE_PREFIX, dir=layout.scratch))
        os.rename(layout.upper, aside / "upper")
        os.rename(layout.work, aside / "work")
        # The new stack may have other layers: fresh mount points (the old ones go later,
        # once nothing can be mounted under them: never rmtree through a mount).
        os.rename(layout.views, Path(tempfile.mkdtemp(prefix=VIEWS_ASIDE_PREFIX, dir=layout.root)) / "lab")
        for d in (layout.upper, layout.work):
            d.mkdir()
            os.chown(d, uid, uid)
        layout.upper.chmod(0o755)
        _make_mountpoints(image=image, layout=layout, uid=uid, idmapped=idmapped)
        if idmapped:
            _mount_idmapped_lowers(image=image, layout=layout, shift=IdShift(stored=stored_uid, base=uid, count=id_count),
                                   pins=pins)
        _mount_stack(image=image, layout=layout, idmapped=idmapped,
                     overlay=overlay_mount(image=image, layout=layout, layers_root=layers_root, idmapped=idmapped))
        return aside
    except BaseException:
        snapshot_remove(layout=layout)
        raise


def snapshot_discard_aside(*, layout: Layout) -> None:
    """Remove what restacks set aside (off the rewind's critical path)."""
    for parent, prefix in ((layout.scratch, ASIDE_PREFIX), (layout.root, VIEWS_ASIDE_PREFIX)):
        for name in _listdir(parent):
            path = parent / name
            if not name.startswith(prefix):
                continue
            if mounts_under(path):
                continue  # left to snapshot_remove, which unmounts before it removes
            shutil.rmtree(path, onerror=_gone_is_fine)


def _gone_is_fine(func, path, exc_info) -> None:
    """A concurrent stop of the same session may remove entries first: that is fine."""
    if not issubclass(exc_info[0], FileNotFoundError):
        raise exc_info[1]


def snapshot_remove(*, layout: Layout) -> None:
    """Unmount everything under the session directory and delete it."""
    if not layout.root.exists():
        return
    unmount(layout.root)
    if mounts_under(layout.root):
        # Never recurse into a mount: that could delete a shared layer.
        raise SandboxError(f"{layout.root} still has mounts; not removing it")
    shutil.rmtree(layout.root, onerror=_gone_is_fine)


def leftover_sessions(sessions_dir: Path, live: Sequence[str]) -> list[Path]:
    """Session directories on disk that no live session owns."""
    if not sessions_dir.exists():
        return []
    keep = set(live)
    return sorted(p for p in sessions_dir.iterdir() if p.is_dir() and p.name not in keep)
