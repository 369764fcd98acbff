"""LDAP / Active Directory sign-in: django-auth-ldap, with roles from directory groups.

Settings (labsite/settings/base.py, from the environment): AUTH_LDAP_* as django-auth-ldap
documents them, plus SSO_LDAP_INSTRUCTOR_GROUPS and SSO_LDAP_STAFF_GROUPS (group DNs).
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django_auth_ldap.backend import LDAPBackend

from sso import services
from sso.exceptions import DirectoryUnavailable
from sso.models import ExternalIdentity

log = logging.getLogger(__name__)
PROVIDER = ExternalIdentity.Provider.LDAP


def _member_of(group_dns: set[str], wanted: list[str]) -> bool:
    have = {dn.lower() for dn in group_dns}
    return any(dn.lower() in have for dn in wanted)


class DirectoryBackend(LDAPBackend):
    """django-auth-ldap's backend that never takes over a local account and maps groups to roles."""

    def get_or_build_user(self, username: str, ldap_user):
        """An existing account is used only if the directory made it; a local account
        with the same name (the admin's, say) is refused, never signed in to."""
        user, built = super().get_or_build_user(username, ldap_user)
        if not built and not services.identity_owns(user=user, provider=PROVIDER):
            log.warning("directory user %r matches a local account that LDAP did not create: refused", username)
            raise PermissionDenied("a local account of that name exists")
        return user, built

    def authenticate_ldap_user(self, ldap_user, password: str):
        """Bind as the user; on success link the account and set its roles from its groups now."""
        user = super().authenticate_ldap_user(ldap_user, password)
        if user is None:
            return None
        groups = set(ldap_user.group_dns)
        services.identity_link(user=user, provider=PROVIDER, subject=user.get_username().lower())
        services.user_sync_roles(
            user=user,
            instructor=_member_of(groups, settings.SSO_LDAP_INSTRUCTOR_GROUPS),
            staff=_member_of(groups, settings.SSO_LDAP_STAFF_GROUPS),
        )
        log.info("directory sign-in", extra={"user_id": user.pk, "sso": "ldap"})
        return user


def directory_unreachable(sender, context: str, user, request, exception: Exception, **kwargs) -> None:
    """django-auth-ldap's ldap_error signal: the server is down or refused a query."""
    log.error("LDAP %s failed: %s", context, exception.__class__.__name__)
    raise DirectoryUnavailable(str(exception.__class__.__name__))
