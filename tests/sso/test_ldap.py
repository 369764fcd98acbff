"""LDAP / Active Directory sign-in against a real slapd (tests/sso/slapd.py)."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import Client

from cohorts.selectors import is_instructor
from sso.models import ExternalIdentity
from tests.sso.slapd import INSTRUCTORS_DN, PEOPLE, USERS
from tests.support import free_port


def sign_in(client: Client, name: str, password: str):
    return client.post("/accounts/login/", {"username": name, "password": password})


def signed_in_as(client: Client) -> str | None:
    from django.contrib.auth import SESSION_KEY

    uid = client.session.get(SESSION_KEY)
    return get_user_model().objects.get(pk=uid).username if uid else None


def test_ldap_is_off_by_default():
    from django.conf import settings

    assert settings.SSO_LDAP_ENABLED is False
    assert settings.AUTHENTICATION_BACKENDS == ["django.contrib.auth.backends.ModelBackend"]


def test_directory_instructor_signs_in_and_gets_the_instructor_role(ldap_on):
    client = Client()
    response = sign_in(client, "alice", USERS["alice"])
    assert response.status_code == 302
    assert signed_in_as(client) == "alice"
    alice = get_user_model().objects.get(username="alice")
    assert is_instructor(alice) and not alice.is_staff
    assert (alice.first_name, alice.email) == ("Alice", "alice@corp.example.org")
    assert not alice.has_usable_password()  # never a local password to fall back on
    assert ExternalIdentity.objects.filter(user=alice, provider="ldap").exists()


def test_directory_trainee_gets_no_role_and_admins_group_gives_staff(ldap_on):
    assert sign_in(Client(), "bob", USERS["bob"]).status_code == 302
    assert sign_in(Client(), "carol", USERS["carol"]).status_code == 302
    User = get_user_model()
    bob, carol = User.objects.get(username="bob"), User.objects.get(username="carol")
    assert not is_instructor(bob) and not bob.is_staff
    assert carol.is_staff and not carol.is_superuser


def test_wrong_directory_password_is_refused(ldap_on):
    client = Client()
    response = sign_in(client, "alice", "not-her-password")
    assert response.status_code == 200
    assert signed_in_as(client) is None
    assert not get_user_model().objects.filter(username="alice").exists()


def test_removed_from_the_directory_group_loses_instructor_rights_at_next_sign_in(ldap_on):
    assert sign_in(Client(), "alice", USERS["alice"]).status_code == 302
    assert is_instructor(get_user_model().objects.get(username="alice"))
    ldap_on.modify(f"dn: {INSTRUCTORS_DN}\nchangetype: modify\nadd: member\nmember: uid=bob,{PEOPLE}\n-\n"
                   f"delete: member\nmember: uid=alice,{PEOPLE}\n")
    try:
        assert sign_in(Client(), "alice", USERS["alice"]).status_code == 302
        assert not is_instructor(get_user_model().objects.get(username="alice"))
    finally:
        ldap_on.modify(f"dn: {INSTRUCTORS_DN}\nchangetype: modify\nadd: member\nmember: uid=alice,{PEOPLE}\n-\n"
                       f"delete: member\nmember: uid=bob,{PEOPLE}\n")


def test_a_directory_entry_named_like_the_local_admin_never_becomes_the_admin(ldap_on, make_user):
    admin = get_user_model().objects.create_superuser("admin", "admin@lab.example.org", "local-admin-pw-1")
    client = Client()
    sign_in(client, "admin", USERS["admin"])  # the directory's password for its own "admin"
    assert signed_in_as(client) is None
    assert not ExternalIdentity.objects.filter(user=admin).exists()
    # The local admin keeps signing in with the local password.
    assert sign_in(client, "admin", "local-admin-pw-1").status_code == 302
    assert signed_in_as(client) == "admin"


def test_directory_down_gives_a_clear_error_and_signs_nobody_in(ldap_on, settings):
    settings.AUTH_LDAP_SERVER_URI = f"ldap://127.0.0.1:{free_port()}"  # nobody listens there
    client = Client()
    response = sign_in(client, "alice", USERS["alice"])
    assert response.status_code == 503
    assert "LDAP" in response.content.decode()
    assert signed_in_as(client) is None
    assert not get_user_model().objects.filter(username="alice").exists()


def test_local_admin_signs_in_while_the_directory_is_down(ldap_on, settings):
    get_user_model().objects.create_superuser("root", "root@lab.example.org", "local-admin-pw-1")
    settings.AUTH_LDAP_SERVER_URI = f"ldap://127.0.0.1:{free_port()}"
    client = Client()
    assert sign_in(client, "root", "local-admin-pw-1").status_code == 302
    assert signed_in_as(client) == "root"


def test_login_page_tells_directory_users_to_use_their_company_account(ldap_on):
    page = Client().get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'data-testid="sso-ldap-hint"' in page
    assert 'data-testid="sso-oidc"' not in page
