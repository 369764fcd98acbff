"""The one place a page view's errors become the error page (labs and cohorts use it)."""
from __future__ import annotations

import functools
from typing import Callable

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from labs.exceptions import LabError


def page(view: Callable) -> Callable:
    """Signed-in users only; a LabError becomes the error page with its status."""

    @login_required
    @functools.wraps(view)
    def inner(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except LabError as exc:
            return render(request, "labs/error.html", {"title": str(exc.status), "message": exc.message},
                          status=exc.status)

    return inner
