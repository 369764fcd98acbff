"""Errors of the cohorts app: labs' own (labs.exceptions), so the one mapping there
(error_answer) answers them."""
from __future__ import annotations

from labs.exceptions import BadRequest, Forbidden, LabError, NotFound  # noqa: F401  (re-exported)
