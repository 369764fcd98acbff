"""Cohorts: an instructor's group of trainees working through assigned labs."""
from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

# No 0/O/1/I/L: codes are read aloud and typed from a projector.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def new_invite_code() -> str:
    """An 8-character invite code, easy to type, hard to guess (31^8 ≈ 8.5e11)."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


class Cohort(models.Model):
    """A group of trainees run by its owner (and any co-instructors)."""

    name = models.CharField(_("name"), max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("owner"), on_delete=models.PROTECT,
                              related_name="owned_cohorts")
    invite_code = models.CharField(_("invite code"), max_length=16, unique=True, default=new_invite_code)
    joining_open = models.BooleanField(_("joining open"), default=True, help_text="trainees may join with the code or link")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    labs = models.ManyToManyField("labs.Lab", verbose_name=_("labs"), through="CohortLab", related_name="cohorts")

    class Meta:
        ordering = ["-created_at"]
        verbose_name, verbose_name_plural = _("cohort"), _("cohorts")

    def __str__(self) -> str:
        return self.name


class CohortLab(models.Model):
    """A lab assigned to a cohort, with an optional due date."""

    cohort = models.ForeignKey(Cohort, verbose_name=_("cohort"), on_delete=models.CASCADE, related_name="assignments")
    lab = models.ForeignKey("labs.Lab", verbose_name=_("lab"), on_delete=models.CASCADE, related_name="assignments")
    due_at = models.DateTimeField(_("due at"), null=True, blank=True)
    position = models.PositiveIntegerField(_("position"), default=0)

    class Meta:
        ordering = ["cohort", "position", "id"]
        verbose_name, verbose_name_plural = _("assigned lab"), _("assigned labs")
        constraints = [models.UniqueConstraint(fields=["cohort", "lab"], name="cohort_lab_unique")]

    def __str__(self) -> str:
        return f"{self.cohort} · {self.lab}"


class Membership(models.Model):
    """A user in a cohort: a trainee, or a co-instructor with the owner's rights."""

    class Role(models.TextChoices):
        TRAINEE = "trainee", _("trainee")
        INSTRUCTOR = "instructor", _("instructor")

    cohort = models.ForeignKey(Cohort, verbose_name=_("cohort"), on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE,
                             related_name="cohort_memberships")
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.TRAINEE)
    joined_at = models.DateTimeField(_("joined at"), auto_now_add=True)

    class Meta:
        ordering = ["cohort", "user__username"]
        verbose_name, verbose_name_plural = _("membership"), _("memberships")
        constraints = [models.UniqueConstraint(fields=["cohort", "user"], name="membership_unique")]
        indexes = [models.Index(fields=["user", "role"])]

    def __str__(self) -> str:
        return f"{self.user} in {self.cohort} ({self.role})"
