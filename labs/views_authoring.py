"""Pages of authoring in the browser: my labs, a lab's versions, one version's test and diff."""
from __future__ import annotations


from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from labs import authoring, selectors, testruns
from labs.pages import page


@page
def my_labs(request: HttpRequest) -> HttpResponse:
    """The labs this user authors (admins: every lab), with their newest version's state."""
    if not selectors.can_author(request.user):
        return render(request, "labs/error.html", {"title": "404", "message": "no such page"}, status=404)
    labs = [{"lab": lab, "title": selectors.pick(lab.title, request.LANGUAGE_CODE),
             "latest": authoring.version_history(lab=lab)[:1]} for lab in authoring.labs_authored(user=request.user)]
    return render(request, "labs/authoring/my_labs.html", {"labs": labs})


@page
def versions_page(request: HttpRequest, slug: str) -> HttpResponse:
    """A lab's version history: who uploaded, tested and published what, and when."""
    lab = authoring.lab_for_editor(user=request.user, slug=slug)
    return render(request, "labs/authoring/versions.html", {
        "lab": lab, "title": selectors.pick(lab.title, request.LANGUAGE_CODE),
        "versions": authoring.version_history(lab=lab)})


@page
def version_page(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """One version: its test (live while it runs), Publish beside it, and its diff."""
    version = authoring.version_get(user=request.user, slug=slug, number=number)
    view = authoring.version_view(version, live=authoring.version_live(version.lab))
    return render(request, "labs/authoring/version.html", {
        "lab": version.lab, "title": selectors.pick(version.lab.title, request.LANGUAGE_CODE), "v": view,
        "diff": authoring.version_diff(version=version),
        "page_data": {"slug": version.lab.slug, "number": version.number, "test": view["test"],
                      "ws": f"/ws/labs/{version.lab.slug}/versions/{version.number}/test/",
                      "api": f"/api/labs/{version.lab.slug}/versions/{version.number}/",
                      "labels": {"passed": _("passed"), "failed": _("failed"), "running": _("running…"),
                                 "queued": _("queued…"), "none": _("not run yet")}}})


@page
@require_POST
def version_test(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """Run `labs test` on the version (a task on a worker host); the page shows it live."""
    testruns.version_test_request(user=request.user,
                                  version=authoring.version_get(user=request.user, slug=slug, number=number))
    return HttpResponseRedirect(f"/labs/{slug}/versions/{number}/")


@page
@require_POST
def version_publish(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """Publish the version; a failed last test needs the override box ticked."""
    version = authoring.version_get(user=request.user, slug=slug, number=number)
    authoring.version_publish(user=request.user, version=version, override=request.POST.get("override") == "1")
    return HttpResponseRedirect(f"/labs/{slug}/versions/")


@page
def edit_page(request: HttpRequest, slug: str) -> HttpResponse:
    """Edit the lab's YAML and step Markdown in place (CodeMirror 6), checked as you type."""
    lab = authoring.lab_for_editor(user=request.user, slug=slug)
    return render(request, "labs/authoring/edit.html", {
        "lab": lab, "title": selectors.pick(lab.title, request.LANGUAGE_CODE),
        "page_data": {"slug": lab.slug, "api": f"/api/labs/{lab.slug}/edit", "schema": "/api/labs/schema",
                      "labels": {"saved": _("Saved as version {n}."), "unchanged": _("No change: still version {n}."),
                                 "problems": _("{n} problems"), "ok": _("No problems"),
                                 "preview_yaml": _("Open a step's Markdown file to see it rendered here."),
                                 "preview": _("Preview with a sandbox"), "versions": _("Test, diff, publish")}}})
