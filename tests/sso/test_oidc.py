"""OpenID Connect sign-in against a real provider (tests/sso/provider: django-oauth-toolkit,
RS256), the lab side in this process; the browser test is tests/e2e/test_sso_browser.py."""
from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.core.exceptions import SuspiciousOperation
from django.test import Client

from cohorts.selectors import is_instructor
from sso.models import ExternalIdentity
from sso.oidc import ProviderBackend
from tests.sso.idp import CLIENT_ID, Provider
from tests.support import free_port


def oidc_sign_in(provider: Provider, user: str, client: Client | None = None):
    """The whole code flow: the lab's redirect, the provider's login page, the lab's callback."""
    client = client or Client()
    start = client.get("/oidc/authenticate/")
    assert start.status_code == 302 and start["Location"].startswith(provider.issuer + "/authorize/")
    callback = provider.sign_in(start["Location"], user)
    assert callback.startswith("http://testserver/oidc/callback/?")
    return client, client.get(callback.removeprefix("http://testserver"))


def signed_in(client: Client):
    uid = client.session.get(SESSION_KEY)
    return get_user_model().objects.get(pk=uid) if uid else None


def test_oidc_is_off_by_default(client, db):
    from django.conf import settings

    assert settings.SSO_OIDC_ENABLED is False
    assert client.get("/oidc/authenticate/").status_code == 404
    assert 'data-testid="sso-oidc"' not in client.get("/accounts/login/").content.decode()


def test_login_page_shows_the_providers_button_when_on(oidc_on):
    page = Client().get("/accounts/login/?next=/cohorts/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'data-testid="sso-oidc"' in page and "Example Corp" in page
    assert "/oidc/authenticate/?next=/cohorts/" in page
    assert 'data-testid="login-username"' in page  # local accounts keep their form
    zh = Client().get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "使用 Example Corp 登录" in zh


def test_group_claim_gives_instructor_and_staff_roles(oidc_on):
    client, done = oidc_sign_in(oidc_on, "ines")
    assert done.status_code == 302 and done["Location"] == "/"
    ines = signed_in(client)
    assert ines.username == "ines" and is_instructor(ines) and not ines.is_staff
    assert ines.email == "ines@corp.example.org" and not ines.has_usable_password()
    assert ExternalIdentity.objects.get(user=ines).subject.startswith(oidc_on.issuer + "|")
    client, _ = oidc_sign_in(oidc_on, "sara")
    assert signed_in(client).is_staff
    client, _ = oidc_sign_in(oidc_on, "tom")
    tom = signed_in(client)
    assert not is_instructor(tom) and not tom.is_staff


def test_removed_from_the_providers_group_loses_instructor_rights_at_next_sign_in(oidc_on):
    client, _ = oidc_sign_in(oidc_on, "ines")
    assert is_instructor(signed_in(client))
    oidc_on.set_groups("ines")
    try:
        client, _ = oidc_sign_in(oidc_on, "ines")
        ines = signed_in(client)
        assert ines.username == "ines" and not is_instructor(ines)
        assert get_user_model().objects.filter(username__startswith="ines").count() == 1  # same account
    finally:
        oidc_on.set_groups("ines", "instructors")


def test_an_identity_matching_a_local_account_never_becomes_it(oidc_on):
    User = get_user_model()
    admin = User.objects.create_superuser("admin", "admin@corp.example.org", "local-admin-pw-1")
    client, _ = oidc_sign_in(oidc_on, "admin")  # same user name and e-mail at the provider
    user = signed_in(client)
    assert user is not None and user.pk != admin.pk and user.username == "admin-2"
    assert not user.is_superuser and not user.is_staff
    # The local admin still signs in with the local password.
    local = Client()
    assert local.post("/accounts/login/", {"username": "admin", "password": "local-admin-pw-1"}).status_code == 302
    assert signed_in(local).pk == admin.pk


def _refused(client: Client, done) -> None:
    assert done.status_code == 302 and done["Location"] == "/accounts/login/?sso_error=oidc"
    assert signed_in(client) is None
    page = client.get(done["Location"], HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'data-testid="sso-error"' in page


def test_a_wrong_issuer_signs_nobody_in(oidc_on, settings):
    settings.OIDC_OP_ISSUER = "https://idp.example.net/o"
    client, done = oidc_sign_in(oidc_on, "ines")
    _refused(client, done)
    assert not get_user_model().objects.filter(username="ines").exists()


def test_a_provider_that_is_down_gives_a_clear_error(oidc_on, settings):
    client = Client()
    start = client.get("/oidc/authenticate/")
    callback = oidc_on.sign_in(start["Location"], "ines")
    settings.OIDC_OP_TOKEN_ENDPOINT = f"http://127.0.0.1:{free_port()}/o/token/"  # gone before the callback
    _refused(client, client.get(callback.removeprefix("http://testserver")))


def test_a_forged_callback_state_is_refused(oidc_on):
    client = Client()
    client.get("/oidc/authenticate/")
    _refused(client, client.get("/oidc/callback/?code=abc&state=not-ours"))


def _token(key_pem: bytes, kid: str, **claims) -> str:
    now = int(time.time())
    body = {"iss": None, "aud": CLIENT_ID, "sub": "1", "iat": now, "exp": now + 300, "nonce": "n1", **claims}
    return jwt.encode(body, key_pem, algorithm="RS256", headers={"kid": kid})


def _provider_key(provider: Provider) -> tuple[bytes, str]:
    import requests

    pem = (Path(provider.env["PROVIDER_DIR"]) / "rsa.pem").read_bytes()
    kid = requests.get(f"{provider.issuer}/.well-known/jwks.json", timeout=10).json()["keys"][0]["kid"]
    return pem, kid


def test_tokens_verify_only_when_signed_by_the_provider_unexpired_and_for_us(oidc_on):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem, kid = _provider_key(oidc_on)
    backend = ProviderBackend()
    good = _token(pem, kid, iss=oidc_on.issuer)
    assert backend.verify_token(good, nonce="n1")["sub"] == "1"  # the checks below can fail only for their reason
    expired = _token(pem, kid, iss=oidc_on.issuer, exp=int(time.time()) - 60)
    with pytest.raises(jwt.ExpiredSignatureError):
        backend.verify_token(expired, nonce="n1")
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(SuspiciousOperation):
        backend.verify_token(_token(other_key, kid, iss=oidc_on.issuer), nonce="n1")  # forged signature
    with pytest.raises(SuspiciousOperation):
        backend.verify_token(_token(pem, kid, iss="https://evil.example.org"), nonce="n1")
    with pytest.raises(SuspiciousOperation):
        backend.verify_token(_token(pem, kid, iss=oidc_on.issuer, aud="another-client"), nonce="n1")
    with pytest.raises(SuspiciousOperation):
        backend.verify_token(good, nonce="replayed")


def test_a_half_configured_sso_is_reported_by_manage_py_check(tmp_path):
    import os
    import subprocess
    import sys

    from tests.sso.idp import ROOT

    env = dict(os.environ, DJANGO_SETTINGS_MODULE="labsite.settings.dev", LAB_DATA_DIR=str(tmp_path),
               OIDC_RP_CLIENT_ID="lab", LDAP_SERVER_URI="ldap://127.0.0.1:1")
    proc = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "sso.E001" in proc.stderr and "OIDC_OP_ISSUER must be set" in proc.stderr
    assert "sso.E002" in proc.stderr
