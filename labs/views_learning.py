"""Pages of the learning experience: the lab page's data, instructors' preview and upload."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_POST

from labs import authoring, learning, selectors
from labs.exceptions import NotFound
from labs.models import Lab
from labs.pages import page
from labs.models import LabUpload
from labs.upload_jobs import upload_get, upload_queue, upload_view
from labs.uploads import UploadRejected


def render_lab(request: HttpRequest, lab: Lab, *, preview: bool = False) -> HttpResponse:
    """The lab page (steps beside the terminal) with the trainee's own progress restored."""
    data = learning.lab_page(user=request.user, lab=lab, lang=request.LANGUAGE_CODE)
    # No setup or auto-check from a GET: the page says "I am here" (POST …/progress) once
    # its sandbox is ready, and that follows the session.
    live = selectors.live_session_for_lab(user=request.user, lab=lab)
    ended = None if live else selectors.recent_end_for_lab(user=request.user, lab=lab)
    page_data = {
        "lab": lab.slug, "session": selectors.session_view(live) if live else None, "api": "/api/",
        "ended": selectors.session_view(ended) if ended else None,
        "preview": preview, "progress": data["progress"], "solution_after": learning.SOLUTION_AFTER_FAILURES,
    }
    return render(request, "labs/lab_detail.html", {
        "lab": data, "page_data": page_data, "preview": preview, "can_preview": learning.can_preview(request.user),
        "next_lab": selectors.lab_next(lab=lab, lang=request.LANGUAGE_CODE),
        "authoring": authoring.preview_box(user=request.user, lab=lab) if preview else None})


@page
def lab_preview(request: HttpRequest, slug: str) -> HttpResponse:
    """A lab (published, unpublished or a draft) as trainees will see it: its author and admins only."""
    authoring.lab_for_editor(user=request.user, slug=slug)  # NotFound for anyone else
    return render_lab(request, learning.lab_for(user=request.user, slug=slug), preview=True)


@page
@require_POST
def lab_publish(request: HttpRequest, slug: str) -> HttpResponse:
    """Publish the previewed version (its author or an admin); a failed last test needs `override`."""
    lab = learning.lab_for(user=request.user, slug=slug)
    main = authoring.lab_publish(user=request.user, lab=lab, override=request.POST.get("override") == "1")
    return HttpResponseRedirect(f"/labs/{main.slug}/")


@page
def lab_upload(request: HttpRequest) -> HttpResponse:
    """Instructors and admins upload a lab directory as a .tar.gz or .zip: a new version, unpublished."""
    if not selectors.can_author(request.user):
        raise NotFound("no such page")
    errors: list[str] = []
    if request.method == "POST":
        archive = request.FILES.get("archive")
        if archive is None:
            errors = ["archive: choose a .tar.gz or .zip file"]
        else:
            try:
                job = upload_queue(user=request.user, upload=archive, name=archive.name, size=archive.size)
            except UploadRejected as exc:
                errors = exc.errors
            else:  # imported by a worker; the page follows it
                return HttpResponseRedirect(f"/labs/upload/{job.id}/")
    return render(request, "labs/upload.html", {"errors": errors}, status=400 if errors else 200)


@page
def lab_upload_status(request: HttpRequest, upload_id: str) -> HttpResponse:
    """An upload's import: waiting or importing (the page follows it), its errors, or on
    to the preview once it is done."""
    job = upload_get(user=request.user, upload_id=upload_id)  # NotFound for anyone else
    view = upload_view(job)
    if view["state"] == LabUpload.State.DONE:
        return HttpResponseRedirect(view["preview_url"])
    return render(request, "labs/upload.html", {"errors": view["errors"], "job": view},
                  status=400 if view["state"] == LabUpload.State.FAILED else 200)
