"""Instructors upload a lab as an archive: extract it safely, validate it, keep it as a version.

The archive is hostile until proven otherwise: only regular files and directories,
no absolute path, no `..`, no link or device, at most MAX_BYTES unpacked. The lab is
built in a temporary directory beside its final place and renamed into place
(labs.authoring: `LAB_DATA_DIR/labs/.versions/<slug>/<n>`, and `LAB_DATA_DIR/labs/<slug>`
for the version the lab's row holds), so a failed upload leaves nothing behind.
"""
from __future__ import annotations

import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from dataclasses import replace
from typing import IO, Callable, Iterator

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from labs.exceptions import BadRequest
from labs.models import Lab, LabVersion

MAX_BYTES = 10 * 1024 * 1024
MAX_FILES = 2000
RESERVED_SLUGS = frozenset({"upload"})  # /labs/upload/ is the upload form


class UploadRejected(BadRequest):
    """An archive that cannot become a lab; `errors` lists every reason (file:line:column: …)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _safe_name(name: str) -> PurePosixPath:
    """A member name as a relative path inside the archive, or UploadRejected."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (path.parts and ":" in path.parts[0]):
        raise UploadRejected([f"{name}: absolute paths are not allowed in a lab archive"])
    if ".." in path.parts:
        raise UploadRejected([f"{name}: '..' is not allowed in a lab archive"])
    return path


def _tar_members(archive: tarfile.TarFile) -> Iterator[tuple[PurePosixPath, int, IO[bytes] | None]]:
    for member in archive:
        path = _safe_name(member.name)
        if member.isdir():
            yield path, 0, None
        elif member.isfile():
            yield path, member.size, archive.extractfile(member)
        else:
            kind = "link" if member.issym() or member.islnk() else "special file"
            raise UploadRejected([f"{member.name}: a {kind} is not allowed in a lab archive (regular files only)"])


def _zip_members(archive: zipfile.ZipFile) -> Iterator[tuple[PurePosixPath, int, IO[bytes] | None]]:
    for info in archive.infolist():
        path = _safe_name(info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UploadRejected([f"{info.filename}: a link is not allowed in a lab archive (regular files only)"])
        if info.is_dir():
            yield path, 0, None
        else:
            yield path, info.file_size, archive.open(info)


def extract_archive(upload: IO[bytes], name: str, dest: Path) -> None:
    """Unpack a .tar.gz/.tgz/.tar or .zip into `dest` (an empty directory), refusing anything unsafe."""
    lower = name.lower()
    if lower.endswith(".zip"):
        try:
            archive = zipfile.ZipFile(upload)
        except zipfile.BadZipFile as exc:
            raise UploadRejected([f"{name}: not a readable zip archive ({exc})"]) from None
        members = _zip_members(archive)
    elif lower.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            archive = tarfile.open(fileobj=upload, mode="r:*")
        except tarfile.TarError as exc:
            raise UploadRejected([f"{name}: not a readable tar archive ({exc})"]) from None
        members = _tar_members(archive)
    else:
        raise UploadRejected([f"{name}: expected a .tar.gz, .tgz or .zip archive of a lab directory"])
    total = files = 0
    with archive:
        try:
            for path, size, stream in members:
                target = dest.joinpath(*path.parts)
                if stream is None:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                files += 1
                if files > MAX_FILES:
                    raise UploadRejected([f"{name}: more than {MAX_FILES} files"])
                target.parent.mkdir(parents=True, exist_ok=True)
                # Count what is really written, not what the header claims (a zip bomb lies).
                with stream, open(target, "xb") as out:
                    while chunk := stream.read(64 * 1024):
                        total += len(chunk)
                        if total > MAX_BYTES:
                            raise UploadRejected([f"{name}: more than {MAX_BYTES // (1024 * 1024)} MB unpacked"])
                        out.write(chunk)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
            if isinstance(exc, FileExistsError):
                raise UploadRejected([f"{name}: {exc.filename} appears twice in the archive"]) from None
            raise UploadRejected([f"{name}: the archive is damaged ({exc})"]) from None


def _image_resolver():
    """Check images against this installation's store when it has one."""
    if not (Path(settings.LAB_DATA_DIR) / "images").is_dir():
        return None
    from labs.management.commands.labs import store_image_resolver

    return store_image_resolver()


def lab_upload(*, user: AbstractBaseUser, upload: IO[bytes], name: str, size: int,
               phase: Callable[[str], None] | None = None) -> tuple[LabVersion, bool]:
    """Extract and validate an uploaded lab archive and keep it as the lab's next version
    (labs.authoring.version_store); (version, created). Only the lab's author or an admin
    may upload a version of an existing lab. `phase` hears "extracting", "validating",
    "storing" as each begins (labs.upload_jobs runs this in a Celery task)."""
    phase = phase or (lambda _: None)
    from labs.authoring import labs_root, version_store
    from labs.labfile import discover_labs, validate_labs
    from labs.selectors import can_author, may_edit

    if not can_author(user):
        raise UploadRejected(["only instructors may upload labs"])
    if size > MAX_BYTES:
        raise UploadRejected([f"{name}: the archive is larger than {MAX_BYTES // (1024 * 1024)} MB"])
    root = labs_root()
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".upload-", dir=root))
    try:
        (work / "src").mkdir()
        phase("extracting")
        extract_archive(upload, name, work / "src")
        phase("validating")
        found = discover_labs(work / "src")
        if len(found) != 1:
            raise UploadRejected([f"{name}: expected exactly one lab directory with a lab.yaml, found {len(found)}"])
        specs, errors = validate_labs(found, image_resolver=_image_resolver())
        if errors:
            raise UploadRejected([str(e).replace(str(found[0]) + "/", "") for e in errors])
        slug = specs[0].slug
        if slug in RESERVED_SLUGS:
            raise UploadRejected([f"lab.yaml:1:1: slug: '{slug}' is reserved by the site; choose another"])
        existing = Lab.objects.filter(slug=slug, draft_of__isnull=True).first()
        if existing is not None and not may_edit(user=user, lab=existing):
            raise UploadRejected([f"lab.yaml:1:1: slug: '{slug}' is the slug of another author's lab; choose another"])
        found[0].rename(work / "lab")
        phase("storing")
        return version_store(user=user, spec=replace(specs[0], path=work / "lab"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
