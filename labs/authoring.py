"""Authoring in the browser: versions of a lab, publishing them, their history and diffs.

A lab's row (its slug) is what trainees see: the published version, or before the first
publish the newest upload, seen only by its author and admins. Every upload is a new
*version*, its files kept under `LAB_DATA_DIR/labs/.versions/<slug>/<n>`. While a lab is
published, a new version goes to a preview copy `<slug>__draft` (a slug no author can
write, since authored slugs have no `_`), so the published version stays live until the
author publishes the new one; publishing imports it into the lab's row by step id, the
way `labs import` does, so trainees in the middle of the lab keep their progress.
"""
from __future__ import annotations

import difflib
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from labs.exceptions import Conflict, NotFound
from labs.labfile import LabSpec, load_lab
from labs.models import Lab, LabVersion
from labs.selectors import is_admin, may_edit
from labs.services import lab_import
from labs.i18n import say

DRAFT_SUFFIX = "__draft"
# Positions of uploaded labs start here: after the built-in course (0, 1, …), never inside it.
UPLOADED_FROM = 10_000
TEXT_SUFFIXES = (".yaml", ".yml", ".md", ".txt", ".sh", ".json")
TEXT_MAX = 256 * 1024
T = LabVersion.TestState


def labs_root() -> Path:
    """Where uploaded labs live: `<slug>/` the installed files, `.versions/` every version."""
    return Path(settings.LAB_DATA_DIR) / "labs"


def draft_slug(slug: str) -> str:
    """The preview copy's slug of a published lab's newest draft."""
    return slug + DRAFT_SUFFIX


def main_lab(lab: Lab) -> Lab:
    """The lab itself for a draft copy; the lab for the lab."""
    return lab.draft_of if lab.draft_of_id else lab


# ---- Selectors -----------------------------------------------------------------------------

def labs_authored(*, user: AbstractBaseUser) -> QuerySet[Lab]:
    """The labs this user may edit: their own; admins every lab. Drafts are not listed apart."""
    qs = Lab.objects.filter(draft_of__isnull=True).select_related("owner")
    return qs if is_admin(user) else qs.filter(owner=user)


def lab_for_editor(*, user: AbstractBaseUser, slug: str) -> Lab:
    """A lab (by its slug or its draft's) this user may edit; NotFound for anyone else."""
    lab = Lab.objects.filter(slug=slug).select_related("draft_of").first()
    lab = main_lab(lab) if lab is not None else None
    if lab is None or not may_edit(user=user, lab=lab):
        raise NotFound(f"no lab named {slug!r}")
    return lab


def version_get(*, user: AbstractBaseUser, slug: str, number: int) -> LabVersion:
    """Version `number` of a lab this user may edit, or NotFound."""
    version = lab_for_editor(user=user, slug=slug).versions.filter(number=number).first()
    if version is None:
        raise NotFound(f"lab {slug!r} has no version {number}")
    return version


def version_live(lab: Lab) -> LabVersion | None:
    """The version trainees see now: the published lab's files."""
    if not lab.published:
        return None
    return lab.versions.filter(sha=lab.version, published_at__isnull=False).order_by("-published_at").first()


def version_preview_slug(version: LabVersion) -> str | None:
    """Where the version can be previewed (and a sandbox started): the lab or its draft copy."""
    lab = version.lab
    if lab.version == version.sha and (not lab.published or version.published_at):
        return lab.slug
    draft = lab.drafts.filter(version=version.sha).first()
    return draft.slug if draft else None


def _who(user) -> str | None:
    return user.get_username() if user else None


def _iso(at) -> str | None:
    return at.isoformat() if at else None


def version_view(version: LabVersion, *, live: LabVersion | None = None) -> dict:
    """A version as the history page and the API show it."""
    rows = version.test_rows or []
    return {
        "number": version.number, "sha": version.sha[:12], "created_by": _who(version.created_by),
        "created_at": _iso(version.created_at), "published_at": _iso(version.published_at),
        "published_by": _who(version.published_by), "publish_override": version.publish_override,
        "live": live is not None and live.pk == version.pk,
        "test": {"state": version.test_state or "none", "at": _iso(version.tested_at), "by": _who(version.tested_by),
                 "passed": sum(1 for r in rows if r.get("ok")), "failed": sum(1 for r in rows if not r.get("ok")),
                 "rows": rows},
        "preview": version_preview_slug(version),
    }


def version_history(*, lab: Lab) -> list[dict]:
    """Every version of the lab, newest first: who uploaded, tested and published it, when."""
    live = version_live(lab)
    versions = lab.versions.select_related("created_by", "published_by", "tested_by", "lab")
    return [version_view(v, live=live) for v in versions]


def version_diff(*, version: LabVersion, against: LabVersion | None = None) -> list[dict]:
    """The unified diff of the version's text files against another version (default: the
    one before it); one entry per changed file, each line with its kind (file, +, -, @, space)."""
    if against is None:
        against = version.lab.versions.filter(number__lt=version.number).order_by("-number").first()
    old = against.files if against else {}
    new = version.files or {}
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        lines = list(difflib.unified_diff((a or "").splitlines(), (b or "").splitlines(),
                                          f"v{against.number}/{name}" if against and a is not None else "/dev/null",
                                          f"v{version.number}/{name}" if b is not None else "/dev/null", lineterm=""))
        out.append({"file": name, "status": "added" if a is None else "removed" if b is None else "changed",
                    "lines": [{"kind": "file" if i < 2 else (line[:1] if line[:1] in "+-@" else " "), "text": line}
                              for i, line in enumerate(lines)]})
    return out


# ---- Services ------------------------------------------------------------------------------

def _text_files(lab_dir: Path) -> dict[str, str]:
    files = {}
    for path in sorted(p for p in lab_dir.rglob("*") if p.is_file()):
        if path.suffix.lower() in TEXT_SUFFIXES and path.stat().st_size <= TEXT_MAX:
            try:
                files[path.relative_to(lab_dir).as_posix()] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
    return files


def _install(source: Path, slug: str) -> Path:
    """Copy a version's files to `labs/<slug>`, swapped in by renames; the old copy goes last."""
    root = labs_root()
    work = Path(tempfile.mkdtemp(prefix=".install-", dir=root))
    final = root / slug
    try:
        shutil.copytree(source, work / "lab")
        if final.exists():
            final.rename(work / "old")
        (work / "lab").rename(final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _import_main(*, spec: LabSpec, lab: Lab | None, owner: AbstractBaseUser, published: bool) -> Lab:
    """The version's files become the lab's row (steps matched by id: progress is kept)."""
    final = _install(spec.path, spec.slug)
    imported, _ = lab_import(spec=load_lab(final), position=lab.position if lab else UPLOADED_FROM + Lab.objects.count())
    Lab.objects.filter(pk=imported.pk).update(published=published, owner=lab.owner if lab and lab.owner_id else owner)
    labs_place_uploaded()
    imported.refresh_from_db()
    return imported


def labs_place_uploaded() -> None:
    """Uploaded labs come after the built-in course, however long it grows (its labs are
    numbered from 0 by `manage.py labs import`): each after its own prerequisites among
    them, otherwise in the order they were first uploaded."""
    uploaded = list(Lab.objects.filter(owner__isnull=False, draft_of__isnull=True).order_by("pk")
                    .only("pk", "slug", "position", "prerequisites"))
    known = {lab.slug for lab in uploaded}
    placed: list[Lab] = []
    done: set[str] = set()
    pending = list(uploaded)
    while pending:
        ready = [lab for lab in pending if all(p in done or p not in known for p in lab.prerequisites or ())]
        nxt = (ready or pending)[0]  # a cycle keeps the rest in upload order
        placed.append(nxt)
        done.add(nxt.slug)
        pending.remove(nxt)
    for i, lab in enumerate(placed):
        if lab.position != UPLOADED_FROM + i:
            Lab.objects.filter(pk=lab.pk).update(position=UPLOADED_FROM + i)


def version_store(*, user: AbstractBaseUser, spec: LabSpec) -> tuple[LabVersion, bool]:
    """Keep a validated lab directory (spec.path, moved) as the lab's next version and put it
    where it can be previewed; (version, created). The same files as the newest version
    make no new version."""
    lab = Lab.objects.filter(slug=spec.slug, draft_of__isnull=True).first()
    latest = lab.versions.order_by("-number").first() if lab else None
    if latest is not None and latest.sha == spec.version:
        shutil.rmtree(spec.path, ignore_errors=True)
        return latest, False
    number = (latest.number if latest else 0) + 1
    dest = labs_root() / ".versions" / spec.slug / str(number)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():  # left by an upload that failed after the move
        shutil.rmtree(dest)
    Path(spec.path).rename(dest)
    spec = load_lab(dest)
    with transaction.atomic():
        if lab is None or not lab.published:
            lab = _import_main(spec=spec, lab=lab, owner=user, published=False)
        else:
            draft, _ = lab_import(spec=replace(spec, slug=draft_slug(spec.slug)), position=lab.position)
            Lab.objects.filter(pk=draft.pk).update(published=False, draft_of=lab, owner=lab.owner)
        version = LabVersion.objects.create(lab=lab, number=number, sha=spec.version, path=str(dest),
                                            files=_text_files(dest), created_by=user)
    return version, True


def version_publish(*, user: AbstractBaseUser, version: LabVersion, override: bool = False) -> LabVersion:
    """Make the version the one trainees see. A version whose last test failed needs `override`."""
    lab = version.lab
    if not may_edit(user=user, lab=lab):
        raise NotFound(f"no lab named {lab.slug!r}")
    if version.test_state in (T.QUEUED, T.RUNNING):
        raise Conflict(say("测试还在运行，请等它结束。", "The test of this version is still running; publish when it ends."))
    if version.test_state == T.FAILED and not override:
        raise Conflict(say(f"版本 {version.number} 的最近一次测试失败了：确认后才能发布。",
                           f"The last test of version {version.number} failed: confirm to publish it anyway."))
    with transaction.atomic():
        _import_main(spec=load_lab(Path(version.path)), lab=lab, owner=user, published=True)
        version.published_at = timezone.now()
        version.published_by = user
        version.publish_override = version.test_state == T.FAILED
        version.save(update_fields=["published_at", "published_by", "publish_override"])
    lab.refresh_from_db()
    return version


def lab_publish(*, user: AbstractBaseUser, lab: Lab, override: bool = False) -> Lab:
    """Publish a lab from its preview: the version previewed (a draft's, or the lab's newest);
    a lab imported from the command line (no versions) is simply made visible."""
    main = main_lab(lab)
    if not may_edit(user=user, lab=main):
        raise NotFound(f"no lab named {lab.slug!r}")
    version = main.versions.filter(sha=lab.version).order_by("-number").first()
    if version is None:
        Lab.objects.filter(pk=main.pk).update(published=True)
    else:
        version_publish(user=user, version=version, override=override)
    main.refresh_from_db()
    return main


def preview_box(*, user: AbstractBaseUser, lab: Lab) -> dict | None:
    """What the preview banner shows beside Publish: the previewed version and its last test."""
    main = main_lab(lab)
    if not may_edit(user=user, lab=main):
        return None
    version = main.versions.filter(sha=lab.version).select_related("tested_by").order_by("-number").first()
    live = version_live(main)
    return {"slug": main.slug, "draft": bool(lab.draft_of_id), "published": main.published,
            "version": version_view(version, live=live) if version else None,
            "live": live.number if live else None, "versions_url": f"/labs/{main.slug}/versions/"}
