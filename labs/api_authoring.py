"""JSON API of authoring: upload a version, list versions, test and publish one.
Session cookie + CSRF header; errors are JSON through labs.api.api; only a lab's author
and admins reach its versions (404 for anyone else, as for a lab that does not exist)."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

from labs import authoring, editing, selectors, testruns
from labs.api import api, body
from labs.exceptions import BadRequest, NotFound
from labs.upload_jobs import upload_get, upload_queue, upload_view
from labs.uploads import UploadRejected


def _lab_view(lab, lang: str) -> dict:
    return {"slug": lab.slug, "title": selectors.pick(lab.title, lang), "published": lab.published,
            "owner": lab.owner.get_username() if lab.owner else None, "versions_url": f"/labs/{lab.slug}/versions/"}


@api("GET")
def labs_authored(request: HttpRequest) -> HttpResponse:
    """The labs this user authors (admins: every lab)."""
    if not selectors.can_author(request.user):
        raise NotFound("no such page")
    return JsonResponse([_lab_view(lab, request.LANGUAGE_CODE) for lab in authoring.labs_authored(user=request.user)],
                        safe=False)


@api("POST")
def upload(request: HttpRequest) -> HttpResponse:
    """multipart `archive`: queues the import of a new version of a lab (new or the user's
    own); 202 with the upload to follow at `url`."""
    if not selectors.can_author(request.user):
        raise NotFound("no such page")
    archive = request.FILES.get("archive")
    if archive is None:
        raise BadRequest("archive: choose a .tar.gz or .zip file")
    try:
        job = upload_queue(user=request.user, upload=archive, name=archive.name, size=archive.size)
    except UploadRejected as exc:
        return JsonResponse({"error": exc.message, "errors": exc.errors}, status=400)
    return JsonResponse({**upload_view(job), "url": f"/api/authoring/uploads/{job.id}"}, status=202)


@api("GET")
def upload_status(request: HttpRequest, upload_id: str) -> HttpResponse:
    """An upload's import: queued, importing (phase), done (the version) or failed (errors)."""
    return JsonResponse(upload_view(upload_get(user=request.user, upload_id=upload_id)))


@api("GET")
def versions(request: HttpRequest, slug: str) -> HttpResponse:
    """The lab's version history."""
    lab = authoring.lab_for_editor(user=request.user, slug=slug)
    return JsonResponse({**_lab_view(lab, request.LANGUAGE_CODE), "versions": authoring.version_history(lab=lab)})


@api("GET")
def version(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """One version: its test and its diff against the version before it."""
    v = authoring.version_get(user=request.user, slug=slug, number=number)
    return JsonResponse({**authoring.version_view(v, live=authoring.version_live(v.lab)),
                         "diff": authoring.version_diff(version=v)})


@api("POST")
def version_test(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """Queue `labs test` of the version on a worker host; rows stream over the version's WebSocket."""
    v = testruns.version_test_request(user=request.user,
                                      version=authoring.version_get(user=request.user, slug=slug, number=number))
    return JsonResponse(authoring.version_view(v)["test"], status=202)


@api("POST")
def version_publish(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """{override?: true}: publish the version; 409 when its last test failed and override is not set."""
    override = body(request).get("override") is True
    v = authoring.version_get(user=request.user, slug=slug, number=number)
    v = authoring.version_publish(user=request.user, version=v, override=override)
    return JsonResponse(authoring.version_view(v, live=authoring.version_live(v.lab)))


@api("GET")
def schema(request: HttpRequest) -> HttpResponse:
    """The lab JSON Schema (labs/schema/lab.schema.json), which the editor is fed."""
    if not selectors.can_author(request.user):
        raise NotFound("no such page")
    return JsonResponse(editing.lab_schema())


@api("GET")
def edit(request: HttpRequest, slug: str) -> HttpResponse:
    """The lab's editable files (lab.yaml, step Markdown) as of its newest version."""
    return JsonResponse(editing.edit_files(lab=authoring.lab_for_editor(user=request.user, slug=slug)))


@api("POST")
def edit_check(request: HttpRequest, slug: str) -> HttpResponse:
    """{files}: every problem (schema and loader) by file, line and column."""
    lab = authoring.lab_for_editor(user=request.user, slug=slug)
    return JsonResponse({"diagnostics": editing.edit_check(lab=lab, files=body(request).get("files"))})


@api("POST")
def edit_preview(request: HttpRequest, slug: str) -> HttpResponse:
    """{markdown}: the step as the lab page renders it."""
    authoring.lab_for_editor(user=request.user, slug=slug)
    return JsonResponse({"html": editing.edit_preview(markdown=body(request).get("markdown"))})


@api("POST")
def edit_save(request: HttpRequest, slug: str) -> HttpResponse:
    """{files}: keep them as the lab's next version; 201 (200 when nothing changed)."""
    lab = authoring.lab_for_editor(user=request.user, slug=slug)
    version, created = editing.edit_save(user=request.user, lab=lab, files=body(request).get("files"))
    return JsonResponse({"lab": lab.slug, "created": created, **authoring.version_view(version)},
                        status=201 if created else 200)
