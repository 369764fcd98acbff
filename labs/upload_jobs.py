"""Uploaded labs are imported by a Celery task with a time limit, not in the request
(issue 13 item 8): the request only checks who may upload and the size, keeps the
archive and queues the import; the page and the API follow its LabUpload row.

The archive travels in the LabUpload row (at most 10 MB), so the web and the worker
need not share a file system; it is emptied once read.

The task's own limit (`LAB_UPLOAD_SECONDS`) covers extracting and validating, the work
a hostile archive can make long; it is an interval timer in the worker process, so it
ends the import where it is. Storing the version (bounded: at most MAX_BYTES copied,
one transaction) is left to finish, under Celery's hard time limit sent with the task
(which kills the worker child). An import still "importing" past both is shown failed.
"""
from __future__ import annotations

import io
import secrets
import signal
import threading
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Callable, Iterator

from celery import current_app
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from labs import authoring
from labs.exceptions import NotFound
from labs.models import LabUpload
from labs.selectors import can_author
from labs.uploads import MAX_BYTES, UploadRejected, lab_upload

S = LabUpload.State
# Celery's hard limit comes this long after the import's own (storing runs past it).
HARD_MARGIN = 30
SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


class ImportTimedOut(Exception):
    """The import ran past its time limit."""


def upload_queue(*, user: AbstractBaseUser, upload: Any, name: str, size: int) -> LabUpload:
    """Keep an uploaded archive and queue its import; what can be refused without
    reading it (who, size, kind of file) is refused here with UploadRejected."""
    if not can_author(user):
        raise UploadRejected(["only instructors may upload labs"])
    if size > MAX_BYTES:
        raise UploadRejected([f"{name}: the archive is larger than {MAX_BYTES // (1024 * 1024)} MB"])
    if not name.lower().endswith(SUFFIXES):
        raise UploadRejected([f"{name}: expected a .tar.gz, .tgz or .zip archive of a lab directory"])
    data = b"".join(upload.chunks()) if hasattr(upload, "chunks") else upload.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:  # what was read, not what was claimed
        raise UploadRejected([f"{name}: the archive is larger than {MAX_BYTES // (1024 * 1024)} MB"])
    job = LabUpload.objects.create(id=secrets.token_hex(16), user=user, name=name[:255], archive=data,
                                   seconds=float(settings.LAB_UPLOAD_SECONDS))
    transaction.on_commit(lambda: current_app.send_task(
        "labs.tasks.lab_upload_import", args=[job.id], queue=settings.CELERY_TASK_DEFAULT_QUEUE,
        soft_time_limit=job.seconds + HARD_MARGIN / 2, time_limit=job.seconds + HARD_MARGIN, expires=3600))
    return job


@contextmanager
def _time_limit(seconds: float) -> Iterator[Callable[[], None]]:
    """Raise ImportTimedOut in this (main) thread after `seconds`; yields a function that
    lifts the limit early. Outside the main thread only Celery's limits apply."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return

    def expired(signum, frame):
        raise ImportTimedOut()

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield lambda: signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _set(job_id: str, **fields: Any) -> None:
    LabUpload.objects.filter(id=job_id).update(**fields)


def upload_import(*, upload_id: str) -> str:
    """Run a queued import once (the first caller claims it); its final state."""
    if not LabUpload.objects.filter(id=upload_id, state=S.QUEUED).update(state=S.IMPORTING, started_at=timezone.now()):
        return "taken"  # another worker has it, or it is over (a redelivered task)
    job = LabUpload.objects.select_related("user").get(id=upload_id)
    data = bytes(job.archive)
    result: dict[str, Any] = {"state": S.FAILED}
    try:
        with _time_limit(job.seconds) as lift:
            def phase(name: str) -> None:
                if name == "storing":
                    lift()  # bounded work, in one transaction: let it finish
                _set(job.id, phase=name)

            version, created = lab_upload(user=job.user, upload=io.BytesIO(data), name=job.name,
                                          size=len(data), phase=phase)
        result = {"state": S.DONE, "version": version, "created": created}
    except UploadRejected as exc:
        result["errors"] = exc.errors
    except ImportTimedOut:
        result["errors"] = [f"{job.name}: the import took longer than {job.seconds:g} s and was stopped"]
    finally:
        _set(job.id, phase="", archive=b"", finished_at=timezone.now(), **result)
    return result["state"]


def upload_get(*, user: AbstractBaseUser, upload_id: str) -> LabUpload:
    """The uploader's own import (admins: anyone's), or NotFound."""
    job = LabUpload.objects.select_related("version__lab").filter(id=upload_id).first()
    if job is None or (job.user_id != user.id and not user.is_staff):
        raise NotFound("no such upload")
    return job


def upload_view(job: LabUpload) -> dict[str, Any]:
    """An import as the page and the API show it; one killed past its hard limit is failed."""
    state, errors = job.state, list(job.errors)
    hard = timedelta(seconds=job.seconds + HARD_MARGIN + 5)
    if state == S.IMPORTING and job.started_at and timezone.now() - job.started_at > hard:
        state, errors = S.FAILED, [f"{job.name}: the import took longer than {job.seconds:g} s and was stopped"]
    out: dict[str, Any] = {"upload": job.id, "name": job.name, "state": state, "phase": job.phase,
                           "errors": errors, "seconds": job.seconds,
                           "message": {S.QUEUED: _("Waiting for a worker…"), S.IMPORTING: _("Importing…"),
                                       S.DONE: _("Imported."), S.FAILED: _("The lab was not imported:")}[state]}
    if state == S.DONE and job.version is not None:
        out.update(**authoring.version_view(job.version), lab=job.version.lab.slug, created=job.created,
                   preview_url=f"/labs/{authoring.version_preview_slug(job.version) or job.version.lab.slug}/preview/")
    return out
