"""Fixtures of the single sign-on tests: a private slapd and settings that switch LDAP on."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.sso.slapd import GROUPS, INSTRUCTORS_DN, PEOPLE, ROOT_DN, ROOT_PW, SLAPD, STAFF_DN, Slapd, start_slapd


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
