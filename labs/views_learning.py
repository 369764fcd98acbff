"""Pages of the learning experience: the lab page's data, instructors' preview and upload."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_POST

from labs import learning, selectors
from labs.exceptions import NotFound
from labs.models import Lab
from labs.uploads import UploadRejected, lab_upload as upload_service


def render_lab(request: HttpRequest, lab: Lab, *, preview: bool = False) -> HttpResponse:
    """The lab page (steps beside the terminal) with the trainee's own progress restored."""
    data = learning.lab_page(user=request.user, lab=lab, lang=request.LANGUAGE_CODE)
    live = selectors.live_session_for_lab(user=request.user, lab=lab)
    if live is not None:
        learning.session_follow(session=live)
    ended = None if live else selectors.recent_end_for_lab(user=request.user, lab=lab)
    page_data = {
        "lab": lab.slug, "session": selectors.session_view(live) if live else None, "api": "/api/",
        "ended": selectors.session_view(ended) if ended else None,
        "preview": preview, "progress": data["progress"], "solution_after": learning.SOLUTION_AFTER_FAILURES,
    }
    return render(request, "labs/lab_detail.html", {"lab": data, "page_data": page_data, "preview": preview,
                                                    "can_preview": learning.can_preview(request.user),
                                                    "next_lab": selectors.lab_next(lab=lab, lang=request.LANGUAGE_CODE)})


def _not_found(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "labs/error.html", {"title": "404", "message": message}, status=404)


@login_required
def lab_preview(request: HttpRequest, slug: str) -> HttpResponse:
    """An unpublished (or published) lab as trainees will see it: staff and instructors only."""
    if not learning.can_preview(request.user):
        return _not_found(request, f"no lab named {slug!r}")
    try:
        lab = learning.lab_for(user=request.user, slug=slug)
    except NotFound as exc:
        return _not_found(request, exc.message)
    return render_lab(request, lab, preview=True)


@login_required
@require_POST
def lab_publish(request: HttpRequest, slug: str) -> HttpResponse:
    """Publish a previewed lab (staff only)."""
    if not request.user.is_staff:
        return _not_found(request, f"no lab named {slug!r}")
    Lab.objects.filter(slug=slug).update(published=True)
    return HttpResponseRedirect(f"/labs/{slug}/")


@login_required
def lab_upload(request: HttpRequest) -> HttpResponse:
    """Staff upload a lab directory as a .tar.gz or .zip; it is imported unpublished."""
    if not request.user.is_staff:
        return _not_found(request, "no such page")
    errors: list[str] = []
    if request.method == "POST":
        archive = request.FILES.get("archive")
        if archive is None:
            errors = ["archive: choose a .tar.gz or .zip file"]
        else:
            try:
                lab = upload_service(upload=archive, name=archive.name, size=archive.size)
            except UploadRejected as exc:
                errors = exc.errors
            else:
                return HttpResponseRedirect(f"/labs/{lab.slug}/preview/")
    return render(request, "labs/upload.html", {"errors": errors}, status=400 if errors else 200)
