"""Fixtures of the single sign-on tests: a private slapd and settings that switch LDAP on."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.sso.idp import Provider, start_provider
from tests.sso.slapd import GROUPS, INSTRUCTORS_DN, PEOPLE, ROOT_DN, ROOT_PW, SLAPD, STAFF_DN, Slapd, start_slapd
from tests.support import free_port


@pytest.fixture(scope="session")
def slapd() -> Iterator[Slapd]:
    """A real OpenLDAP server for the whole run, torn down at the end."""
    if not SLAPD.exists():
        pytest.skip("slapd is not installed (`./lab test` installs it)")
    with tempfile.TemporaryDirectory(prefix="slapd-") as tmp:
        server = start_slapd(Path(tmp))
        try:
            yield server
        finally:
            server.stop()


def ldap_settings(uri: str) -> dict:
    """What labsite/settings/base.py makes of LDAP_* environment variables for this directory."""
    import ldap
    from django_auth_ldap.config import GroupOfNamesType, LDAPSearch

    return dict(
        AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.ModelBackend", "sso.ldap.DirectoryBackend"],
        AUTH_LDAP_SERVER_URI=uri, AUTH_LDAP_BIND_DN=ROOT_DN, AUTH_LDAP_BIND_PASSWORD=ROOT_PW,
        AUTH_LDAP_USER_SEARCH=LDAPSearch(PEOPLE, ldap.SCOPE_SUBTREE, "(uid=%(user)s)"),
        AUTH_LDAP_GROUP_SEARCH=LDAPSearch(GROUPS, ldap.SCOPE_SUBTREE, "(objectClass=groupOfNames)"),
        AUTH_LDAP_GROUP_TYPE=GroupOfNamesType(), AUTH_LDAP_ALWAYS_UPDATE_USER=True,
        AUTH_LDAP_USER_ATTR_MAP={"first_name": "givenName", "last_name": "sn", "email": "mail"},
        AUTH_LDAP_CONNECTION_OPTIONS={ldap.OPT_NETWORK_TIMEOUT: 3, ldap.OPT_TIMEOUT: 3},
        SSO_LDAP_ENABLED=True, SSO_LDAP_INSTRUCTOR_GROUPS=[INSTRUCTORS_DN], SSO_LDAP_STAFF_GROUPS=[STAFF_DN],
    )


@pytest.fixture
def ldap_on(slapd, settings, transactional_db, cache_clear) -> Slapd:
    """Django configured for the private directory, as the LDAP_* environment would."""
    for name, value in ldap_settings(slapd.uri).items():
        setattr(settings, name, value)
    return slapd


@pytest.fixture
def cache_clear():
    """Login throttling counts live in the cache (Redis): start each test from zero."""
    from django.core.cache import cache

    cache.clear()
    yield


# The browser test's lab web process listens here; the provider must know its callback.
OIDC_WEB_PORT = free_port()


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[Provider]:
    """A real OpenID Connect provider (django-oauth-toolkit) for the whole run."""
    pytest.importorskip("oauth2_provider", reason="django-oauth-toolkit (requirements-dev.txt) is not installed")
    with tempfile.TemporaryDirectory(prefix="idp-") as tmp:
        redirects = f"http://testserver/oidc/callback/ http://127.0.0.1:{OIDC_WEB_PORT}/oidc/callback/"
        provider = start_provider(Path(tmp), redirects)
        try:
            yield provider
        finally:
            provider.stop()


def oidc_settings(provider: Provider) -> dict:
    """What labsite/settings/base.py makes of the OIDC_* environment for this provider."""
    env = provider.lab_env()
    return dict(
        AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.ModelBackend", "sso.oidc.ProviderBackend"],
        ROOT_URLCONF="tests.sso.urls_oidc", SSO_OIDC_ENABLED=True, SSO_OIDC_NAME=env["OIDC_PROVIDER_NAME"],
        OIDC_RP_CLIENT_ID=env["OIDC_RP_CLIENT_ID"], OIDC_RP_CLIENT_SECRET=env["OIDC_RP_CLIENT_SECRET"],
        OIDC_OP_ISSUER=env["OIDC_OP_ISSUER"], OIDC_OP_AUTHORIZATION_ENDPOINT=env["OIDC_OP_AUTHORIZATION_ENDPOINT"],
        OIDC_OP_TOKEN_ENDPOINT=env["OIDC_OP_TOKEN_ENDPOINT"], OIDC_OP_USER_ENDPOINT=env["OIDC_OP_USER_ENDPOINT"],
        OIDC_OP_JWKS_ENDPOINT=env["OIDC_OP_JWKS_ENDPOINT"], OIDC_RP_SIGN_ALGO="RS256",
        OIDC_RP_SCOPES="openid email profile", OIDC_USE_PKCE=True, OIDC_TIMEOUT=10,
        OIDC_CALLBACK_CLASS="sso.views.CallbackView", SSO_OIDC_GROUPS_CLAIM="groups",
        SSO_OIDC_INSTRUCTOR_GROUPS=["instructors"], SSO_OIDC_STAFF_GROUPS=["lab-admins"],
    )


@pytest.fixture
def oidc_on(oidc_provider, settings, transactional_db, cache_clear) -> Provider:
    """Django configured for the private provider, as the OIDC_* environment would."""
    for name, value in oidc_settings(oidc_provider).items():
        setattr(settings, name, value)
    return oidc_provider
