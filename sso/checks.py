"""`manage.py check`: single sign-on switched on but half configured is caught at start,
not at the first person's sign-in."""
from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

OIDC_REQUIRED = ("OIDC_RP_CLIENT_SECRET", "OIDC_OP_ISSUER", "OIDC_OP_AUTHORIZATION_ENDPOINT", "OIDC_OP_TOKEN_ENDPOINT",
                 "OIDC_OP_USER_ENDPOINT", "OIDC_OP_JWKS_ENDPOINT")


@register()
def sso_settings(app_configs, **kwargs) -> list[Error]:
    """Every setting an enabled provider needs is set."""
    errors = []
    if settings.SSO_OIDC_ENABLED:
        for name in OIDC_REQUIRED:
            if not getattr(settings, name, ""):
                errors.append(Error(f"{name} must be set when OIDC_RP_CLIENT_ID is (docs/operations.md)",
                                    id="sso.E001"))
    if settings.SSO_LDAP_ENABLED:
        search = getattr(settings, "AUTH_LDAP_USER_SEARCH", None)
        if search is None or not getattr(search, "base_dn", ""):
            errors.append(Error("LDAP_USER_BASE must be set when LDAP_SERVER_URI is (docs/operations.md)",
                                id="sso.E002"))
    return errors
