"""Errors of single sign-on, each with a message the person signing in can act on."""
from __future__ import annotations

from django.utils.translation import gettext_lazy as _


class DirectoryUnavailable(Exception):
    """The LDAP / Active Directory server could not be reached or refused our query."""

    message = _("The company directory (LDAP) cannot be reached right now. Try again in a few minutes, "
                "or ask your administrator.")
