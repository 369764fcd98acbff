"""Models of replays: when each check happened, for the replay's timeline markers."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

__all__ = ["CheckRecord"]


class CheckRecord(models.Model):
    """One check of a step (pressed, or an automatic pass), with its time and outcome."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE,
                             related_name="check_records")
    step = models.ForeignKey("labs.Step", verbose_name=_("step"), on_delete=models.CASCADE, related_name="check_records")
    passed = models.BooleanField(_("passed"))
    by = models.CharField(_("checked by"), max_length=16, default="check", help_text="check or auto-check")
    at = models.DateTimeField(_("checked at"), auto_now_add=True)

    class Meta:
        app_label = "labs"
        verbose_name, verbose_name_plural = _("check record"), _("check records")
        ordering = ["at"]
        indexes = [models.Index(fields=["user", "at"])]

    def __str__(self) -> str:
        return f"{self.user_id} {self.step_id} {'passed' if self.passed else 'failed'} at {self.at}"
