"""Errors of the cohorts app. They subclass labs' LabError, so labs.api.api maps them to JSON."""
from __future__ import annotations

from labs.exceptions import BadRequest, LabError, NotFound  # noqa: F401  (re-exported)


class Forbidden(LabError):
    """Signed in, but not allowed: not an instructor, or not this cohort's instructor."""

    status = 403
