"""Fixtures for the cohorts tests: an instructor, a cohort of the smoke lab, trainees."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.test import Client

from tests.labs.test_sessions import smoke_lab  # noqa: F401  (a fixture)

PASSWORD = "pw-for-tests-123"


def make_instructor(name: str = "teacher"):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user(name, f"{name}@example.org", PASSWORD)
    user.groups.add(Group.objects.get_or_create(name="instructors")[0])
    return user


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@dataclass
class Class:
    """A cohort of the smoke lab with its instructor and one trainee, signed in."""

    cohort: object
    teacher: object
    trainee: object
    teacher_client: Client
    trainee_client: Client


@pytest.fixture
def klass(smoke_lab, make_user) -> Class:  # noqa: F811
    from cohorts.services import cohort_create, cohort_join

    teacher = make_instructor()
    cohort = cohort_create(owner=teacher, name="Container basics", lab_slugs=["smoke"])
    trainee = make_user("ada")
    cohort_join(user=trainee, code=cohort.invite_code)
    return Class(cohort, teacher, trainee, signed_in(teacher), signed_in(trainee))
