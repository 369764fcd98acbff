"""`run:` recipe steps: a shell command in a one-off build sandbox.

The image so far is the overlay's lowerdirs; the command runs as root in a user
namespace with no network; the upperdir it leaves — new files, changed files and
overlayfs whiteouts for deleted ones — becomes the step's layer, exactly as the
lessons describe a build step.
"""
from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from typing import Callable

from sandbox.images.exceptions import RecipeError
from sandbox.mounts import Mount, mount, unmount
from sandbox.runtime import Limits, sandbox_spec, write_spec

BUILD_TIMEOUT = 600
RUNC_ROOT = Path("/run/container-lab/build")
ROOTS = Path("/run/container-lab/build-roots")


class BuildStepFailed(RecipeError):
    """The command exited non-zero; `output` holds what it printed."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


def run_build_step(*, command: str, lowerdirs: list[Path], workdir: Path, config: dict,
                   uid_base: int, progress: Callable[[str], None] | None = None, id_count: int = 65536) -> Path:
    """Run `command` over the lowerdirs (top first); return the upperdir it produced."""
    box = workdir / f"build-{secrets.token_hex(4)}"
    sid = f"build{secrets.token_hex(6)}"
    # The merged root must be reachable by the sandbox's unprivileged root; the
    # upper and work directories are used by the kernel with the mounter's rights.
    rootfs = ROOTS / sid
    upper, work, empty = box / "upper", box / "work", box / "empty"
    for d in (upper, work, empty, rootfs):
        d.mkdir(parents=True)
    ROOTS.chmod(0o711)
    os.chown(upper, uid_base, uid_base)
    lowers = [str(d) for d in lowerdirs] or [str(empty)]
    mount(Mount("overlay", "overlay", rootfs, (f"lowerdir={':'.join(lowers)}", f"upperdir={upper}", f"workdir={work}")))
    try:
        spec = sandbox_spec(sid=sid, rootfs=rootfs, views=empty, hostname="build", uid=uid_base, id_count=id_count,
                            cgroup_parent="/container-lab/build", limits=Limits(memory_mb=1024, pids=512, cpu=2.0),
                            args=["/bin/sh", "-c", command], terminal=False)
        # A build sees no lab views; everything else is the trainee's sandbox profile.
        spec["mounts"] = [m for m in spec["mounts"] if m["destination"] != "/var/lib/lab"]
        spec["process"]["env"] = list(config.get("Env") or spec["process"]["env"])
        spec["process"]["cwd"] = config.get("WorkingDir") or "/"
        write_spec(box / "config.json", spec)
        if progress:
            progress(f"run: {command}")
        try:
            proc = subprocess.run(["runc", "--root", str(RUNC_ROOT), "run", "--no-new-keyring", "--bundle", str(box), sid],
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise BuildStepFailed(f"`{command}` ran past {BUILD_TIMEOUT} s", "") from exc
        finally:
            subprocess.run(["runc", "--root", str(RUNC_ROOT), "delete", "--force", sid], capture_output=True)
        output = (proc.stdout + proc.stderr).decode("utf-8", "replace")[-4000:]
        if proc.returncode != 0:
            raise BuildStepFailed(f"`{command}` exited with status {proc.returncode}", output)
    finally:
        unmount(rootfs)
        rootfs.rmdir()
        for d in (ROOTS, RUNC_ROOT):
            try:
                d.rmdir()  # empty once no build runs: leave nothing in /run
            except OSError:
                pass
    _drop_mountpoints(upper, lowerdirs)
    return upper


def _drop_mountpoints(upper: Path, lowerdirs: list[Path]) -> None:
    """Remove empty directories runc made only as mountpoints (/proc, /dev, /sys …)."""
    for name in ("proc", "dev", "sys", "dev/pts", "dev/shm", "dev/mqueue", "sys/fs/cgroup"):
        d = upper / name
        in_lower = any((lower / name).is_dir() for lower in lowerdirs)
        if d.is_dir() and not in_lower and not any(d.iterdir()):
            d.rmdir()
