"""Models of the container layer made real: checkpoints and committed images."""
from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

__all__ = ["Checkpoint", "CommittedImage", "SessionImage"]


def new_checkpoint_id() -> str:
    """A short, unguessable id (also the tag of the checkpoint's image in the store)."""
    return secrets.token_hex(6)


class Checkpoint(models.Model):
    """A session's container layer at one moment, as an OCI layer; the store tags the
    sandbox's stack plus that layer as `lab-checkpoints/<session>:<id>`."""

    id = models.CharField(_("checkpoint ID"), primary_key=True, max_length=32, default=new_checkpoint_id, editable=False)
    session = models.ForeignKey("labs.Session", verbose_name=_("session"), on_delete=models.CASCADE, related_name="checkpoints")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE,
                             related_name="checkpoints")
    step = models.CharField(_("step"), max_length=64, blank=True, help_text="the step the trainee was on (or passed)")
    ref = models.CharField(_("image reference"), max_length=200)
    diff_id = models.CharField(_("layer diff ID"), max_length=71)
    size = models.BigIntegerField(_("size"))
    auto = models.BooleanField(_("automatic"), default=False, help_text="taken when a step passed")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        app_label = "labs"
        verbose_name, verbose_name_plural = _("checkpoint"), _("checkpoints")
        ordering = ["created_at"]
        indexes = [models.Index(fields=["user"])]

    def __str__(self) -> str:
        return f"checkpoint {self.id} of {self.session_id}"


class CommittedImage(models.Model):
    """An image a trainee made of their container (`docker commit`): theirs alone."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE,
                             related_name="committed_images")
    ref = models.CharField(_("image reference"), max_length=200, unique=True)
    digest = models.CharField(_("manifest digest"), max_length=71, help_text="manifest digest")
    image_id = models.CharField(_("image ID"), max_length=71, help_text="config digest")
    size = models.BigIntegerField(_("size"), help_text="bytes of the container layer it adds")
    session_id = models.CharField(_("session ID"), max_length=32, blank=True)
    host = models.CharField(_("host"), max_length=100, blank=True, help_text="whose image store holds it")
    holders = models.JSONField(_("also held by"), default=list, blank=True,
                               help_text="other hosts that fetched this commit since (their stores hold it too)")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        app_label = "labs"
        verbose_name, verbose_name_plural = _("committed image"), _("committed images")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.ref


class SessionImage(models.Model):
    """A session started on one of its owner's committed images instead of the lab's."""

    session = models.OneToOneField("labs.Session", verbose_name=_("session"), on_delete=models.CASCADE, related_name="own_image")
    ref = models.CharField(_("image reference"), max_length=200)

    class Meta:
        app_label = "labs"
        verbose_name, verbose_name_plural = _("session image"), _("session images")

    def __str__(self) -> str:
        return f"{self.session_id} on {self.ref}"
