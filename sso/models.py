"""Which outside identity (LDAP entry, OpenID Connect subject) owns which local account."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class ExternalIdentity(models.Model):
    """An account made by single sign-on. Only these accounts sign in through it: a
    directory entry that happens to share a local account's name never becomes it."""

    class Provider(models.TextChoices):
        LDAP = "ldap"
        OIDC = "oidc"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, verbose_name=_("user"), on_delete=models.CASCADE,
                             related_name="external_identities")
    provider = models.CharField(_("provider"), max_length=8, choices=Provider.choices)
    subject = models.CharField(_("subject"), max_length=255, help_text="LDAP user name, or the OpenID Connect issuer and `sub`")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    last_login_at = models.DateTimeField(_("last sign-in at"), auto_now=True)

    class Meta:
        verbose_name, verbose_name_plural = _("external identity"), _("external identities")
        constraints = [models.UniqueConstraint(fields=["provider", "subject"], name="sso_identity_unique")]

    def __str__(self) -> str:
        return f"{self.provider}:{self.subject} → {self.user_id}"
