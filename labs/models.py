"""Labs, their steps, trainees' sandbox sessions and progress."""
from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


def new_session_id() -> str:
    """An unguessable, URL- and path-safe session id."""
    return secrets.token_hex(10)


class Lab(models.Model):
    """A lab as imported from its directory (lab.yaml + Markdown)."""

    slug = models.SlugField(_("slug"), unique=True)
    title = models.JSONField(_("title"), help_text="{'zh-hans': ..., 'en': ...}")
    summary = models.JSONField(_("summary"), default=dict)
    level = models.CharField(_("level"), max_length=32, blank=True)
    minutes = models.PositiveIntegerField(_("minutes"), default=30)
    image = models.CharField(_("image"), max_length=200)
    limits = models.JSONField(_("resource limits"), default=dict)
    setup = models.TextField(_("setup script"), blank=True)
    tags = models.JSONField(_("tags"), default=list)
    prerequisites = models.JSONField(_("prerequisites"), default=list, blank=True, help_text="slugs of the labs to do first")
    version = models.CharField(_("version"), max_length=64, help_text="sha256 of the lab's files")
    source = models.CharField(_("source"), max_length=500, blank=True)
    published = models.BooleanField(_("published"), default=True)
    position = models.PositiveIntegerField(_("position"), default=0)
    imported_at = models.DateTimeField(_("imported at"), auto_now=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("owner"), null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="authored_labs", help_text="the instructor who uploaded it; none for built-in labs")
    draft_of = models.ForeignKey("self", verbose_name=_("draft of"), null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="drafts",
                                 help_text="set on the preview copy of a published lab's newest draft version")

    class Meta:
        ordering = ["position", "slug"]
        verbose_name, verbose_name_plural = _("lab"), _("labs")

    def __str__(self) -> str:
        return self.slug


class Step(models.Model):
    """One step of a lab; `key` is the step id authors write, stable across re-imports."""

    lab = models.ForeignKey(Lab, verbose_name=_("lab"), on_delete=models.CASCADE, related_name="steps")
    key = models.SlugField(_("step key"))
    position = models.PositiveIntegerField(_("position"))
    title = models.JSONField(_("title"))
    text = models.JSONField(_("text"), help_text="Markdown per language")
    data = models.JSONField(_("step data"), default=dict, help_text="check, setup, solution, hints, quiz, auto_check")
    retired = models.BooleanField(_("retired"), default=False, help_text="gone from the lab file; kept for progress")

    class Meta:
        ordering = ["lab", "position"]
        constraints = [models.UniqueConstraint(fields=["lab", "key"], name="step_key_unique_per_lab")]
        verbose_name, verbose_name_plural = _("step"), _("steps")

    def __str__(self) -> str:
        return f"{self.lab.slug}/{self.key}"


class Session(models.Model):
    """A trainee's sandbox: lives on one worker host from start to stop."""

    class State(models.TextChoices):
        STARTING = "starting", _("starting")
        READY = "ready", _("ready")
        STOPPING = "stopping", _("stopping")
        STOPPED = "stopped", _("stopped")
        FAILED = "failed", _("failed")
        LOST = "lost", _("lost")

    LIVE_STATES = (State.STARTING, State.READY, State.STOPPING)

    id = models.CharField(_("session ID"), primary_key=True, max_length=32, default=new_session_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE,
                             related_name="lab_sessions")
    lab = models.ForeignKey(Lab, verbose_name=_("lab"), on_delete=models.CASCADE, related_name="sessions")
    host = models.CharField(_("host"), max_length=100, blank=True)
    state = models.CharField(_("state"), max_length=16, choices=State.choices, default=State.STARTING)
    message = models.TextField(_("message"), blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    # When the state last changed: a start (or reset) is overdue counting from here.
    state_changed_at = models.DateTimeField(_("state changed at"), default=timezone.now)
    ready_at = models.DateTimeField(_("ready at"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires at"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "state"]), models.Index(fields=["host", "state"])]
        verbose_name, verbose_name_plural = _("sandbox session"), _("sandbox sessions")

    def __str__(self) -> str:
        return f"{self.id} ({self.lab.slug}, {self.state})"

    @property
    def is_live(self) -> bool:
        return self.state in self.LIVE_STATES


class StepProgress(models.Model):
    """Where one trainee stands on one step."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE,
                             related_name="step_progress")
    step = models.ForeignKey(Step, verbose_name=_("step"), on_delete=models.CASCADE, related_name="progress")
    started_at = models.DateTimeField(_("started at"), auto_now_add=True)
    passed_at = models.DateTimeField(_("passed at"), null=True, blank=True)
    passed_by = models.CharField(_("passed by"), max_length=16, blank=True, help_text="check or auto-check")
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    hints_used = models.PositiveIntegerField(_("hints used"), default=0)
    solution_used = models.BooleanField(_("solution shown"), default=False)
    last_message = models.TextField(_("last message"), blank=True)

    class Meta:
        verbose_name = _("step progress")
        verbose_name_plural = _("step progress")
        constraints = [models.UniqueConstraint(fields=["user", "step"], name="progress_unique_per_user_step")]
        verbose_name, verbose_name_plural = _("step progress"), _("step progress")


class Recording(models.Model):
    """A session's terminal as asciicast v2 (output with timing, resizes), size-capped."""

    session = models.OneToOneField(Session, verbose_name=_("session"), on_delete=models.CASCADE, related_name="recording")
    cast = models.TextField(_("recording (asciicast)"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name, verbose_name_plural = _("terminal recording"), _("terminal recordings")

    def __str__(self) -> str:
        return f"recording of {self.session_id}"
from labs.models_learning import *  # noqa
from labs.models_authoring import *  # noqa
from labs.models_replay import *  # noqa
from labs.models_inside import *  # noqa
