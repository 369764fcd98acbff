"""Models of the learning experience: every quiz answer a trainee gives."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

__all__ = ["QuizAnswer"]


class QuizAnswer(models.Model):
    """One answer to a step's quiz, kept for the dashboards' answer distribution."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE,
                             related_name="quiz_answers")
    step = models.ForeignKey("labs.Step", verbose_name=_("step"), on_delete=models.CASCADE, related_name="quiz_answers")
    answer = models.JSONField(_("answer"), help_text="a choice id, a list of choice ids, or the text typed")
    correct = models.BooleanField(_("correct"))
    at = models.DateTimeField(_("answered at"), auto_now_add=True)

    class Meta:
        app_label = "labs"
        ordering = ["at"]
        indexes = [models.Index(fields=["step", "correct"]), models.Index(fields=["user", "step"])]
        verbose_name, verbose_name_plural = _("quiz answer"), _("quiz answers")

    def __str__(self) -> str:
        return f"{self.user_id} on {self.step_id}: {'right' if self.correct else 'wrong'}"
