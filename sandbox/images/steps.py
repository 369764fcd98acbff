"""Recipe steps that make a layer without running anything: `busybox` and `copy`.

Each prepares a staging directory (host root owns everything in it, which becomes
uid 0 in the tar) and says what its inputs hash to, so an unchanged step is reused.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

from sandbox.images.exceptions import RecipeError

BUSYBOX = "/bin/busybox"
PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\nnogroup:x:65534:\n"
# name -> mode: the directories a busybox root needs (runc mounts /proc, /sys, /dev over them).
DIRS = {
    "bin": 0o755, "dev": 0o755, "etc": 0o755, "home": 0o755, "proc": 0o555, "root": 0o700,
    "run": 0o755, "sbin": 0o755, "sys": 0o555, "tmp": 0o1777, "usr": 0o755,
    "usr/bin": 0o755, "usr/sbin": 0o755, "var": 0o755, "var/tmp": 0o1777,
}


def _file_hash(path: Path) -> str:
    """sha256 hex of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# What a host shell needs besides its binary and libraries to edit Unicode lines: the
# C.UTF-8 locale (setlocale fails, and the shell falls back to ASCII, if any category is
# missing) and terminfo for the terminal the sandbox says it is (TERM=xterm-256color).
SHELL_DATA = ("/usr/lib/locale/C.utf8", "/lib/terminfo/x/xterm-256color", "/lib/terminfo/x/xterm",
              "/lib/terminfo/d/dumb")


def shell_files(shell: str) -> list[Path]:
    """The files `busybox: {shell: ...}` copies: the shell, each library `ldd` names
    (the dynamic loader included), the C.UTF-8 locale and xterm's terminfo."""
    binary = Path(shell)
    if not binary.is_absolute() or not binary.is_file():
        raise RecipeError(f"shell {shell!r} must be an absolute path to a file on this host (e.g. /bin/bash).")
    try:
        listing = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RecipeError(f"ldd {binary} failed: {exc}") from exc
    libraries = []
    for line in listing.splitlines():
        words = line.split()
        path = words[2] if "=>" in words and len(words) > 2 else words[0] if words else ""
        if path.startswith("/"):
            libraries.append(Path(path))
    data = []
    for name in SHELL_DATA:
        path = Path(name)
        if not path.exists():
            raise RecipeError(f"{path} not found: the shell needs it (Debian's libc-bin and ncurses-base ship it).")
        data.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    return [binary, *libraries, *data]


def busybox_inputs(args: dict[str, Any]) -> tuple[str, list[str]]:
    """The host busybox's hash (and the shell's files', if any) and the applets it
    names (`busybox --list-full`)."""
    binary = Path(args.get("path", BUSYBOX))
    if not binary.is_file():
        raise RecipeError(f"{binary} not found: install Debian's busybox-static (apt-get install busybox-static).")
    try:
        listing = subprocess.run([str(binary), "--list-full"], capture_output=True, text=True,
                                 check=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RecipeError(f"{binary} --list-full failed: {exc}") from exc
    applets = sorted({line.strip().strip("/") for line in listing.splitlines() if line.strip()})
    digest = _file_hash(binary)
    if args.get("shell"):
        h = hashlib.sha256(digest.encode())
        for path in shell_files(str(args["shell"])):
            h.update(f"{path}\0{_file_hash(path)}\n".encode())
        digest = h.hexdigest()
    return digest, applets


def stage_busybox(args: dict[str, Any], staging: Path) -> str:
    """A minimal root: busybox, one symlink per applet, passwd/group, the usual dirs."""
    _, applets = busybox_inputs(args)
    for name, mode in DIRS.items():
        (staging / name).mkdir(parents=True, exist_ok=True)
        os.chmod(staging / name, mode)
    shutil.copyfile(args.get("path", BUSYBOX), staging / "bin/busybox")
    os.chmod(staging / "bin/busybox", 0o755)
    for applet in applets:
        if applet == "bin/busybox" or ".." in applet.split("/"):
            continue
        target = staging / applet
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("/bin/busybox", target)
    (staging / "etc/passwd").write_text(PASSWD)
    (staging / "etc/group").write_text(GROUP)
    (staging / "etc/hostname").write_text("lab\n")
    for path in (staging / "etc/passwd", staging / "etc/group", staging / "etc/hostname"):
        os.chmod(path, 0o644)
    if not args.get("shell"):
        return f"busybox: /bin/busybox and {len(applets)} applet links, /etc/passwd, /etc/group"
    # Debian builds busybox with LAST_SUPPORTED_WCHAR=767: its line editor shows CJK
    # and emoji as '?'. A shell whose line editor handles them comes from the host.
    files = shell_files(str(args["shell"]))
    for path in files:
        target = staging / str(path).lstrip("/")
        for parent in reversed(target.relative_to(staging).parents[:-1]):
            if not (staging / parent).exists():
                (staging / parent).mkdir()
                os.chmod(staging / parent, 0o755)
        if target.is_symlink():
            target.unlink()  # an applet link of the same name
        shutil.copyfile(path, target)  # the bytes, not a link: /lib -> usr/lib on the host
        os.chmod(target, 0o755 if os.access(path, os.X_OK) else 0o644)
    return (f"busybox: /bin/busybox and {len(applets)} applet links, /etc/passwd, /etc/group; "
            f"{args['shell']} with {len(files) - 1} libraries and data files")


def copy_source(args: dict[str, Any], recipe_dir: Path) -> tuple[Path, str]:
    """The checked source path and destination of a `copy:` step."""
    if not isinstance(args, dict) or "src" not in args or "dest" not in args:
        raise RecipeError("copy needs {src: <path relative to the recipe>, dest: </absolute/path>}.")
    src_text, dest = str(args["src"]), str(args["dest"])
    if os.path.isabs(src_text):
        raise RecipeError(f"copy src {src_text!r} must be relative to the recipe's directory.")
    src = (recipe_dir / src_text).resolve()
    if not src.is_relative_to(recipe_dir.resolve()):
        raise RecipeError(f"copy src {src_text!r} leaves the recipe's directory.")
    if not src.exists():
        raise RecipeError(f"copy src {src_text!r} does not exist (looked for {src}).")
    if not dest.startswith("/") or ".." in dest.split("/"):
        raise RecipeError(f"copy dest {dest!r} must be an absolute path without `..`.")
    return src, dest


def copy_inputs(src: Path) -> str:
    """A hash of everything `copy` would read: names, types, modes, bytes, link targets."""
    h = hashlib.sha256()
    paths = [src] if not src.is_dir() else sorted(src.rglob("*"))
    for path in paths:
        st = path.lstat()
        rel = path.relative_to(src).as_posix() if src.is_dir() else path.name
        h.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode())
        if path.is_symlink():
            h.update(os.readlink(path).encode())
        elif path.is_file():
            h.update(_file_hash(path).encode())
        h.update(b"\n")
    return h.hexdigest()


def stage_copy(src: Path, dest: str, staging: Path) -> None:
    """Place `src` at `dest` inside the staging root, owned by root."""
    inner = staging / dest.strip("/")
    if src.is_dir():
        inner.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, inner, symlinks=True, dirs_exist_ok=True)
    else:
        if dest.endswith("/"):
            inner = inner / src.name
        inner.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, inner, follow_symlinks=False)
    for path in [staging, *staging.rglob("*")]:
        os.lchown(path, 0, 0)
        if path.is_dir() and not path.is_symlink() and path != inner and not path.is_relative_to(inner):
            os.chmod(path, 0o755)  # implicit parents, as `COPY` makes them
