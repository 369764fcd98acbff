"""Errors of the labs app (cohorts re-exports them), each with a message a user can act
on. They subclass Django's own where they mean the same (Http404, PermissionDenied,
BadRequest), so Django's handlers and middleware treat them as such too; error_answer
is the one place an exception becomes an HTTP status and message (labs.api for JSON,
labs.pages for pages)."""
from __future__ import annotations

from django.core.exceptions import BadRequest as DjangoBadRequest
from django.core.exceptions import PermissionDenied, SuspiciousOperation, ValidationError
from django.http import Http404


class LabError(Exception):
    """Base: a message a user can act on, and the HTTP status that carries it."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(LabError, DjangoBadRequest):
    status = 400


class Forbidden(LabError, PermissionDenied):
    """Signed in, but not allowed (e.g. not an instructor, or not this cohort's)."""

    status = 403


class NotFound(LabError, Http404):
    status = 404


class Conflict(LabError):
    status = 409


class ServiceUnavailable(LabError):
    """No worker host is alive, or every host is full."""

    status = 503


def error_answer(exc: Exception) -> tuple[int, str] | None:
    """(HTTP status, message) for an error a user can be told about; None for a bug."""
    if isinstance(exc, LabError):
        return exc.status, exc.message
    if isinstance(exc, Http404):
        return 404, str(exc) or "not found"
    if isinstance(exc, PermissionDenied):
        return 403, str(exc) or "permission denied"
    if isinstance(exc, ValidationError):
        return 400, "; ".join(exc.messages)
    if isinstance(exc, (DjangoBadRequest, SuspiciousOperation)):
        return 400, str(exc) or "bad request"
    return None
