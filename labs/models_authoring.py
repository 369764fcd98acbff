"""Models of authoring in the browser: every uploaded version of a lab, its test and who published it."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

__all__ = ["LabVersion", "LabUpload"]


class LabVersion(models.Model):
    """One uploaded version of a lab: its files (kept on disk, text files also here for
    diffs), the last `labs test` run on it, and when and by whom it was published."""

    class TestState(models.TextChoices):
        NONE = "", _("not tested")
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        PASSED = "passed", _("passed")
        FAILED = "failed", _("failed")

    lab = models.ForeignKey("labs.Lab", verbose_name=_("lab"), on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField(_("version number"))
    sha = models.CharField(_("SHA-256"), max_length=64, help_text="sha256 of the lab's files")
    path = models.CharField(_("storage path"), max_length=500, help_text="where this version's files are kept")
    files = models.JSONField(_("files"), default=dict, help_text="{relative path: text} of the text files, for diffs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("created by"), null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    published_at = models.DateTimeField(_("published at"), null=True, blank=True)
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("published by"), null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+")
    publish_override = models.BooleanField(_("published despite a failed test"), default=False,
                                           help_text="published although its last test failed")
    test_state = models.CharField(_("test state"), max_length=16, choices=TestState.choices, default=TestState.NONE, blank=True)
    test_rows = models.JSONField(_("test results"), default=list, help_text="the `labs test` table: one row per step")
    tested_at = models.DateTimeField(_("tested at"), null=True, blank=True)
    tested_by = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("tested by"), null=True, blank=True,
                                  on_delete=models.SET_NULL, related_name="+")

    class Meta:
        app_label = "labs"
        verbose_name, verbose_name_plural = _("lab version"), _("lab versions")
        ordering = ["lab", "-number"]
        constraints = [models.UniqueConstraint(fields=["lab", "number"], name="lab_version_number_unique")]

    def __str__(self) -> str:
        return f"{self.lab_id} v{self.number}"


class LabUpload(models.Model):
    """An uploaded lab archive being imported by a Celery task (labs.uploads): its state,
    what it is doing, and the result (the version made, or every error as file:line:col)."""

    class State(models.TextChoices):
        QUEUED = "queued", _("queued")
        IMPORTING = "importing", _("importing")
        DONE = "done", _("done")
        FAILED = "failed", _("failed")

    id = models.CharField(_("upload ID"), primary_key=True, max_length=32, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE, related_name="+")
    name = models.CharField(_("file name"), max_length=255, help_text="the archive's file name")
    # The archive travels in the database (at most 10 MB): web and worker need not share
    # a file system. Emptied once the import has read it.
    archive = models.BinaryField(_("archive"), default=b"", editable=False)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.QUEUED)
    phase = models.CharField(_("phase"), max_length=32, blank=True, help_text="extracting, validating, storing")
    errors = models.JSONField(_("errors"), default=list)
    version = models.ForeignKey(LabVersion, verbose_name=_("lab version"), null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    created = models.BooleanField(_("new version"), default=False, help_text="a new version (false: same files as the last one)")
    seconds = models.FloatField(_("time limit (seconds)"), help_text="time limit of the import")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    started_at = models.DateTimeField(_("started at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        app_label = "labs"
        verbose_name, verbose_name_plural = _("lab upload"), _("lab uploads")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"upload {self.id} {self.state}"
