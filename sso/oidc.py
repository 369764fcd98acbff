"""OpenID Connect sign-in: mozilla-django-oidc (code flow, PKCE, RS256 via the provider's
JWKS), with the issuer and audience checked and roles taken from a groups claim.

Accounts are found by the provider's `sub` (ExternalIdentity), never by e-mail: an
identity whose e-mail matches a local account does not become that account.
"""
from __future__ import annotations

import logging

import jwt
import requests
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from sso import services
from sso.models import ExternalIdentity

log = logging.getLogger(__name__)
PROVIDER = ExternalIdentity.Provider.OIDC
# What a broken or hostile provider answer raises inside mozilla-django-oidc.
PROVIDER_ERRORS = (SuspiciousOperation, requests.RequestException, jwt.PyJWTError, KeyError, ValueError)


def _groups(claims: dict) -> set[str]:
    value = claims.get(settings.SSO_OIDC_GROUPS_CLAIM) or []
    return {value} if isinstance(value, str) else {str(g) for g in value}


class ProviderBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, stricter about tokens and mapping groups to roles."""

    def authenticate(self, request, **kwargs):
        """The code flow; a provider answer that does not verify signs nobody in."""
        try:
            return super().authenticate(request, **kwargs)
        except PROVIDER_ERRORS as exc:
            log.warning("OpenID Connect sign-in refused: %s: %s", exc.__class__.__name__, exc)
            return None

    def verify_token(self, token: str, **kwargs) -> dict:
        """Signature, expiry and nonce (the library), then issuer and audience (here)."""
        payload = super().verify_token(token, **kwargs)
        if payload.get("iss") != settings.OIDC_OP_ISSUER:
            raise SuspiciousOperation(f"token issuer {payload.get('iss')!r} is not {settings.OIDC_OP_ISSUER!r}")
        audience = payload.get("aud")
        audience = [audience] if isinstance(audience, str) else (audience or [])
        if self.OIDC_RP_CLIENT_ID not in audience:
            raise SuspiciousOperation("token is not meant for this client")
        return payload

    def verify_claims(self, claims: dict) -> bool:
        """A subject is all we need; e-mail is optional."""
        return bool(claims.get("sub"))

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict):
        """The account of this (issuer, sub), made on first sign-in; roles set every time."""
        claims = self.get_userinfo(access_token, id_token, payload)
        if claims.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("userinfo is about another subject than the ID token")
        claims = {**claims, **payload}  # the signed token wins
        subject = f"{payload['iss']}|{payload['sub']}"
        user = services.identity_user(provider=PROVIDER, subject=subject)
        if user is None:
            user = services.identity_create_user(
                provider=PROVIDER, subject=subject,
                username=claims.get("preferred_username") or claims.get("email") or str(payload["sub"]),
                email=claims.get("email", ""), first_name=claims.get("given_name", ""),
                last_name=claims.get("family_name", ""))
        else:
            services.identity_link(user=user, provider=PROVIDER, subject=subject)
        groups = _groups(claims)
        services.user_sync_roles(user=user,
                                 instructor=bool(groups & set(settings.SSO_OIDC_INSTRUCTOR_GROUPS)),
                                 staff=bool(groups & set(settings.SSO_OIDC_STAFF_GROUPS)))
        log.info("OpenID Connect sign-in", extra={"user_id": user.pk, "sso": "oidc"})
        return user
