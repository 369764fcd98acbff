"""HTML pages: the catalogue and the lab page (steps beside the terminal)."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from labs import selectors
from labs.exceptions import NotFound


@login_required
def catalogue(request: HttpRequest) -> HttpResponse:
    return render(request, "labs/catalogue.html", {"labs": selectors.lab_list(lang=request.LANGUAGE_CODE)})


@login_required
def lab_page(request: HttpRequest, slug: str) -> HttpResponse:
    try:
        lab = selectors.lab_detail(slug=slug, lang=request.LANGUAGE_CODE)
    except NotFound as exc:
        return render(request, "labs/error.html", {"title": "404", "message": exc.message}, status=404)
    live = selectors.live_session_for_lab(user=request.user, lab=selectors.lab_get(slug=slug))
    page_data = {"lab": slug, "session": selectors.session_view(live) if live else None, "api": "/api/"}
    return render(request, "labs/lab_detail.html", {"lab": lab, "page_data": page_data})
