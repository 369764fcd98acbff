"""The one place a page view's errors become the error page (labs and cohorts use it)."""
from __future__ import annotations

import functools
from typing import Callable

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from labs.exceptions import error_answer


def page(view: Callable) -> Callable:
    """Signed-in users only; an error a user can be told about (labs.exceptions.error_answer)
    becomes the error page with its status."""

    @login_required
    @functools.wraps(view)
    def inner(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except Exception as exc:
            answer = error_answer(exc)
            if answer is None:
                raise  # a bug: Django's 500 handling
            return render(request, "labs/error.html", {"title": str(answer[0]), "message": answer[1]},
                          status=answer[0])

    return inner
