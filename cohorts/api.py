"""The cohorts JSON API. Session cookie + CSRF header; errors are JSON (labs.api.api)."""
from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.dateparse import parse_datetime
from django.utils import timezone

from cohorts import sandboxes, selectors, services
from cohorts.exceptions import BadRequest, Forbidden
from labs.api import api, body, field
from labs.i18n import say


def _due(value: object) -> datetime | None:
    """An ISO 8601 date-time (naive means the site's time zone), or None."""
    if value in (None, ""):
        return None
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        raise BadRequest(f"due date {value!r} is not an ISO 8601 date-time")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


@api("GET", "POST")
def cohorts(request: HttpRequest) -> HttpResponse:
    """GET: cohorts the user runs and joined. POST {name, labs, due?}: create one (instructors)."""
    if request.method == "GET":
        return JsonResponse({
            "teaching": [selectors.cohort_view(c, teaching=True) for c in selectors.cohorts_teaching(user=request.user)],
            "joined": [selectors.cohort_view(c, teaching=False) for c in selectors.cohorts_joined(user=request.user)],
        })
    data = body(request)
    labs, due = data.get("labs", []), data.get("due") or {}
    if not isinstance(labs, list) or not all(isinstance(s, str) for s in labs) or not isinstance(due, dict):
        raise BadRequest("labs must be a list of lab slugs, due an object {slug: date-time}")
    cohort = services.cohort_create(owner=request.user, name=field(data, "name"), lab_slugs=labs,
                                    due={slug: _due(v) for slug, v in due.items()})
    return JsonResponse(selectors.cohort_view(cohort, teaching=True), status=201)


@api("POST")
def join(request: HttpRequest) -> HttpResponse:
    """POST {code}: join a cohort as a trainee."""
    cohort, joined = services.cohort_join(user=request.user, code=field(body(request), "code"))
    return JsonResponse({**selectors.cohort_view(cohort, teaching=False), "joined": joined})


@api("GET")
def progress(request: HttpRequest, cohort_id: int) -> HttpResponse:
    """Per trainee, per lab, per step progress; a trainee gets only their own."""
    cohort, teaching = selectors.cohort_for_viewer(user=request.user, cohort_id=cohort_id)
    data = selectors.cohort_progress(cohort=cohort, user_ids=None if teaching else [request.user.id],
                                     lang=request.LANGUAGE_CODE)
    if teaching:
        data["stats"] = selectors.progress_stats(data)
    return JsonResponse(data)


@api("POST")
def assign_lab(request: HttpRequest, cohort_id: int) -> HttpResponse:
    """POST {lab, due_at?}: assign a lab or change its due date."""
    cohort = selectors.cohort_for_instructor(user=request.user, cohort_id=cohort_id)
    data = body(request)
    services.cohort_assign_lab(cohort=cohort, lab_slug=field(data, "lab"), due_at=_due(data.get("due_at")), by=request.user)
    return JsonResponse(selectors.cohort_view(cohort, teaching=True))


@api("POST")
def session_extend(request: HttpRequest, cohort_id: int, sid: str) -> HttpResponse:
    """An instructor extends a trainee's sandbox."""
    cohort = selectors.cohort_for_instructor(user=request.user, cohort_id=cohort_id)
    session = services.cohort_session_extend(cohort=cohort, sid=sid, by=request.user)
    return JsonResponse({"id": session.id, "state": session.state, "expires_at": session.expires_at.isoformat()})


@api("POST")
def session_stop(request: HttpRequest, cohort_id: int, sid: str) -> HttpResponse:
    """An instructor stops a trainee's sandbox."""
    cohort = selectors.cohort_for_instructor(user=request.user, cohort_id=cohort_id)
    services.cohort_session_stop(cohort=cohort, sid=sid, by=request.user)
    return HttpResponse(status=202)


@api("GET")
def sandboxes_overview(request: HttpRequest) -> HttpResponse:
    """Admins: live sandboxes per host, capacity, cgroup usage, recent failures."""
    if not selectors.is_admin(request.user):
        raise Forbidden(say("只有管理员可以查看。", "Only admins may see this."))
    return JsonResponse(sandboxes.sandboxes_overview())


@api("POST")
def sandbox_stop(request: HttpRequest, sid: str) -> HttpResponse:
    """Admins: stop any live sandbox."""
    services.ops_session_stop(sid=sid, by=request.user)
    return HttpResponse(status=202)


@api("POST")
def sandbox_extend(request: HttpRequest, sid: str) -> HttpResponse:
    """Admins: extend any live sandbox (within its lab's limit)."""
    session = services.ops_session_extend(sid=sid, by=request.user)
    return JsonResponse({"id": session.id, "state": session.state, "expires_at": session.expires_at.isoformat()})


@api("GET")
def watch_context(request: HttpRequest, cohort_id: int, sid: str) -> HttpResponse:
    """The watched trainee's current step, last check result and hints (the cohort's instructors)."""
    cohort = selectors.cohort_for_instructor(user=request.user, cohort_id=cohort_id)
    session = selectors.cohort_session(cohort=cohort, sid=sid)
    return JsonResponse(selectors.watch_context(session=session, lang=request.LANGUAGE_CODE))
