"""`python -m tests.sso.provider setup CLIENT_ID SECRET REDIRECT_URI`: database, RSA key,
users and the lab's client; `python -m tests.sso.provider groups USER [GROUP…]`: set a
user's groups (as a directory administrator would)."""
from __future__ import annotations

import os
import sys

import django


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.sso.provider.settings")
    from pathlib import Path

    key = Path(os.environ["PROVIDER_DIR"]) / "rsa.pem"
    if argv[0] == "setup" and not key.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        key.write_bytes(pem)
    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from oauth2_provider.models import Application

    if argv[0] == "setup":
        client_id, secret, redirect = argv[1:4]
        call_command("migrate", verbosity=0)
        for name, groups in (("ines", ["instructors"]), ("tom", []), ("sara", ["lab-admins"]), ("admin", [])):
            user = User.objects.create_user(name, f"{name}@corp.example.org", f"{name}-idp-pw", first_name=name.title())
            user.groups.set([Group.objects.get_or_create(name=g)[0] for g in groups])
        Application.objects.create(
            name="Container Image Lab", client_id=client_id, client_secret=secret, redirect_uris=redirect,
            client_type=Application.CLIENT_CONFIDENTIAL, authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
            algorithm=Application.RS256_ALGORITHM, skip_authorization=True)
    elif argv[0] == "groups":
        user = User.objects.get(username=argv[1])
        user.groups.set([Group.objects.get_or_create(name=g)[0] for g in argv[2:]])


if __name__ == "__main__":
    main(sys.argv[1:])
