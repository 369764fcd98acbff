"""The project's errors are Django's where they mean the same, and one function maps
every error a user can be told about to its HTTP status (issue 14)."""
from __future__ import annotations

import pytest
from django.core.exceptions import BadRequest as DjangoBadRequest
from django.core.exceptions import PermissionDenied, SuspiciousOperation, ValidationError
from django.http import Http404

from labs.exceptions import BadRequest, Conflict, Forbidden, NotFound, ServiceUnavailable, error_answer


@pytest.mark.parametrize(("error", "django_type", "status"), [
    (NotFound("no such lab"), Http404, 404),
    (Forbidden("not your cohort"), PermissionDenied, 403),
    (BadRequest("malformed JSON"), DjangoBadRequest, 400),
])
def test_lab_errors_are_djangos_own_and_keep_their_message_and_status(error, django_type, status):
    assert isinstance(error, django_type)
    assert error_answer(error) == (status, error.message)


def test_errors_without_a_django_twin_keep_their_status():
    assert error_answer(Conflict("busy")) == (409, "busy")
    assert error_answer(ServiceUnavailable("no host")) == (503, "no host")


def test_djangos_errors_map_to_their_status_and_a_bug_maps_to_nothing():
    assert error_answer(Http404("gone")) == (404, "gone")
    assert error_answer(PermissionDenied("no")) == (403, "no")
    assert error_answer(ValidationError(["too long", "not a slug"])) == (400, "too long; not a slug")
    assert error_answer(SuspiciousOperation("odd")) == (400, "odd")
    assert error_answer(KeyError("bug")) is None


def test_cohorts_errors_are_the_same_classes():
    from cohorts import exceptions

    assert exceptions.Forbidden is Forbidden and exceptions.NotFound is NotFound
