"""Single sign-on: LDAP / Active Directory and OpenID Connect accounts, mapped to roles."""
from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SsoConfig(AppConfig):
    name = "sso"
    verbose_name = _("Single sign-on")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_auth_ldap.backend import ldap_error

        from sso import checks  # noqa: F401  (registers the settings check)
        from sso.ldap import DirectoryBackend, directory_unreachable

        # django-auth-ldap only logs a server error and then answers "wrong password";
        # the sign-in page must say that the directory is down instead.
        ldap_error.connect(directory_unreachable, sender=DirectoryBackend, dispatch_uid="sso.directory_unreachable")
