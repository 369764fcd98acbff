"""HTML pages: cohort list, join, the live dashboard, watching a terminal, CSV export,
and the admins' sandbox overview."""
from __future__ import annotations

import csv

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.dateparse import parse_datetime
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from cohorts import exports, sandboxes, selectors, services
from cohorts.templatetags.cohorts_units import session_state
from cohorts.exceptions import BadRequest, Forbidden
from labs.pages import page
from labs.selectors import lab_list


def _labels() -> dict:
    """Words the dashboard script shows, in the page's language."""
    return {
        "not_started": _("Not started"), "working": _("Working"), "stuck": _("Stuck"), "passed": _("Passed"),
        "attempts": _("attempts"), "hints": _("hints"), "trainee": _("Trainee"), "step": _("Step"),
        "reached": _("Reached"), "median_time": _("Median time"), "median_attempts": _("Median attempts"),
        "watch": _("Watch"), "extend": _("Extend"), "stop": _("Stop"), "replay": _("Replay"),
        "no_sandbox": _("no sandbox"), "no_trainees": _("No trainees yet: share the invite code."),
        "answers": _("Answers"), "correct": _("Correct"), "choice": _("Choice"), "live": _("live"),
        "offline": _("reconnecting…"), "solution": _("solution shown"),
        "confirm_stop": _("Stop %(name)s's sandbox? Their terminal closes; their progress is kept, and they are told you stopped it."),
        "confirm_extend": _("Give %(name)s's sandbox more time? They are told you extended it."),
        "session_starting": _("Starting"), "session_ready": _("Ready"), "session_stopping": _("Stopping"),
    }


@page
@require_http_methods(["GET", "POST"])
def cohort_list(request: HttpRequest) -> HttpResponse:
    """The user's cohorts; instructors create one here."""
    if request.method == "POST":
        cohort = services.cohort_create(owner=request.user, name=request.POST.get("name", ""),
                                        lab_slugs=request.POST.getlist("labs"))
        return redirect("cohort", cohort_id=cohort.id)
    return render(request, "cohorts/list.html", {
        "teaching": selectors.cohorts_teaching(user=request.user),
        "joined": selectors.cohorts_joined(user=request.user),
        "can_create": selectors.is_instructor(request.user),
        "labs": lab_list(lang=request.LANGUAGE_CODE),
    })


@page
@require_http_methods(["GET", "POST"])
def join(request: HttpRequest, code: str = "") -> HttpResponse:
    """Join by invite link (GET asks, POST joins) or by the code typed on the list page."""
    if request.method == "POST":
        cohort, _joined = services.cohort_join(user=request.user, code=request.POST.get("code") or code)
        return redirect("cohort", cohort_id=cohort.id)
    return render(request, "cohorts/join.html", {"code": code})


@page
def cohort_page(request: HttpRequest, cohort_id: int) -> HttpResponse:
    """Instructors: the live dashboard. Trainees: their own progress."""
    cohort, teaching = selectors.cohort_for_viewer(user=request.user, cohort_id=cohort_id)
    lang = request.LANGUAGE_CODE
    progress = selectors.cohort_progress(cohort=cohort, user_ids=None if teaching else [request.user.id], lang=lang)
    if not teaching:
        return render(request, "cohorts/trainee.html", {"cohort": cohort, "mine": selectors.own_progress(progress),
                                                        "assignments": cohort.assignments.select_related("lab")})
    assigned = {lab["slug"] for lab in progress["labs"]}
    data = {**progress, "stats": selectors.progress_stats(progress), "ws": f"/ws/cohorts/{cohort.id}/",
            "api": f"/api/cohorts/{cohort.id}/", "labels": _labels(),
            "quiz": selectors.quiz_distribution(cohort=cohort, lang=lang)}
    return render(request, "cohorts/dashboard.html", {
        "cohort": cohort, "data": data, "invite_url": request.build_absolute_uri(f"/cohorts/join/{cohort.invite_code}/"),
        "unassigned": [lab for lab in lab_list(lang=lang) if lab["slug"] not in assigned],
        "assignments": cohort.assignments.select_related("lab"),
    })


@page
@require_http_methods(["POST"])
def cohort_manage(request: HttpRequest, cohort_id: int) -> HttpResponse:
    """The dashboard's forms: assign / unassign a lab, a new invite code, open / close joining."""
    cohort = selectors.cohort_for_instructor(user=request.user, cohort_id=cohort_id)
    action = request.POST.get("action")
    if action == "assign":
        due = request.POST.get("due_at") or ""
        due_at = parse_datetime(due) if due else None
        if due and due_at is None:
            raise BadRequest(f"due date {due!r} is not a date and time")
        due_at = timezone.make_aware(due_at) if due_at and timezone.is_naive(due_at) else due_at
        services.cohort_assign_lab(cohort=cohort, lab_slug=request.POST.get("lab", ""), due_at=due_at, by=request.user)
    elif action == "unassign":
        services.cohort_unassign_lab(cohort=cohort, lab_slug=request.POST.get("lab", ""))
    elif action == "new_code":
        services.cohort_new_code(cohort=cohort)
    elif action in ("open", "close"):
        services.cohort_set_joining(cohort=cohort, open_=action == "open")
    else:
        raise BadRequest(f"unknown action {action!r}")
    return redirect("cohort", cohort_id=cohort.id)


@page
def watch_page(request: HttpRequest, cohort_id: int, sid: str) -> HttpResponse:
    """A trainee's terminal, read-only (the terminal WebSocket enforces it too)."""
    cohort = selectors.cohort_for_instructor(user=request.user, cohort_id=cohort_id)
    session = selectors.cohort_session(cohort=cohort, sid=sid)
    return render(request, "cohorts/watch.html", {
        "cohort": cohort, "session": session,
        "context": selectors.watch_context(session=session, lang=request.LANGUAGE_CODE),
        "page_data": {"session": session.id, "ws": f"/ws/terminal/{session.id}/", "state": session.state,
                      "context": f"/api/cohorts/{cohort.id}/sessions/{session.id}/context",
                      "labels": {"passed": _("Passed"), "failed": _("Not yet"), "done": _("All steps passed"),
                                 "hints": _("hints"), "solution": _("solution shown"), "none": _("no check yet"),
                                 "states": {s: session_state(s) for s in ("starting", "ready", "stopping", "stopped",
                                                                          "failed", "lost")},
                                 "terminal": _("Terminal {n}"), "terminals": _("Terminals of this sandbox")}},
    })


@page
def progress_csv(request: HttpRequest, cohort_id: int) -> HttpResponse:
    """The progress API's numbers as CSV (a trainee gets only their own rows)."""
    cohort, teaching = selectors.cohort_for_viewer(user=request.user, cohort_id=cohort_id)
    progress = selectors.cohort_progress(cohort=cohort, user_ids=None if teaching else [request.user.id])
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="cohort-{cohort.id}-progress.csv"'
    response.write("\ufeff")  # the BOM: Excel then reads UTF-8 (Chinese names) instead of the local code page
    writer = csv.writer(response)
    writer.writerow(selectors.CSV_HEADER)
    writer.writerows(selectors.progress_csv_rows(progress))
    return response


@page
def progress_xlsx(request: HttpRequest, cohort_id: int) -> HttpResponse:
    """The same rows as the CSV, as an Excel workbook (same rule: a trainee gets only their own)."""
    cohort, teaching = selectors.cohort_for_viewer(user=request.user, cohort_id=cohort_id)
    progress = selectors.cohort_progress(cohort=cohort, user_ids=None if teaching else [request.user.id])
    response = HttpResponse(exports.progress_xlsx(progress, title=cohort.name), content_type=exports.XLSX_TYPE)
    response["Content-Disposition"] = f'attachment; filename="cohort-{cohort.id}-progress.xlsx"'
    return response


@page
def sandboxes_page(request: HttpRequest) -> HttpResponse:
    """Admins: live sandboxes per worker host, and the last day's failures."""
    if not selectors.is_admin(request.user):
        raise Forbidden(_("Only admins may see the sandbox overview."))
    return render(request, "cohorts/sandboxes.html", {"overview": sandboxes.sandboxes_overview()})


@page
@require_http_methods(["POST"])
def sandbox_action(request: HttpRequest, sid: str, action: str) -> HttpResponse:
    """Admins stop or extend a sandbox from the overview (the trainee is told who did it)."""
    act = {"stop": services.ops_session_stop, "extend": services.ops_session_extend}.get(action)
    if act is None:
        raise BadRequest(f"unknown action {action!r}")
    act(sid=sid, by=request.user)
    return redirect("sandboxes")
