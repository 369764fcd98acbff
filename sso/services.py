"""Writes: accounts made by single sign-on and the roles the directory gives them."""
from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction

from labs.selectors import INSTRUCTORS_GROUP
from sso.models import ExternalIdentity


def identity_user(*, provider: str, subject: str) -> AbstractBaseUser | None:
    """The local account an outside identity signed in as before, if any."""
    found = ExternalIdentity.objects.select_related("user").filter(provider=provider, subject=subject).first()
    return found.user if found else None


def identity_link(*, user: AbstractBaseUser, provider: str, subject: str) -> None:
    """Record (or touch) that this outside identity owns this account."""
    ExternalIdentity.objects.update_or_create(provider=provider, subject=subject, defaults={"user": user})


def identity_owns(*, user: AbstractBaseUser, provider: str) -> bool:
    """Was this account made by (and so belongs to) this provider?"""
    return ExternalIdentity.objects.filter(user=user, provider=provider).exists()


def _free_username(wanted: str) -> str:
    User = get_user_model()
    base = re.sub(r"[^\w.@+-]", "-", wanted)[:140] or "user"
    name, n = base, 1
    while User.objects.filter(username__iexact=name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


@transaction.atomic
def identity_create_user(*, provider: str, subject: str, username: str, email: str = "",
                         first_name: str = "", last_name: str = "") -> AbstractBaseUser:
    """A new local account for an outside identity: no usable password (it signs in
    only through its provider), a user name of its own even if the wanted one is taken."""
    user = get_user_model().objects.create_user(_free_username(username), email=email or "",
                                                first_name=first_name[:150], last_name=last_name[:150])
    user.set_unusable_password()
    user.save(update_fields=["password"])
    identity_link(user=user, provider=provider, subject=subject)
    return user


def user_sync_roles(*, user: AbstractBaseUser, instructor: bool, staff: bool) -> None:
    """Make the account's roles what the directory says now: in or out of the
    `instructors` group, staff or not. Run at every sign-in, so a person removed from a
    directory group loses the role at their next sign-in."""
    group, _ = Group.objects.get_or_create(name=INSTRUCTORS_GROUP)
    if instructor:
        user.groups.add(group)
    else:
        user.groups.remove(group)
    if user.is_staff != staff:
        user.is_staff = staff
        user.save(update_fields=["is_staff"])
