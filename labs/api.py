"""The JSON API the lab page uses. Session cookie + CSRF header; errors are JSON.

Every view is thin: parse, call one service or selector, answer. Errors raised as
labs.exceptions (and Django's Http404, PermissionDenied, ValidationError) become
`{"error": message}` with their status here, through labs.exceptions.error_answer.
"""
from __future__ import annotations

import functools
import json
import logging
from typing import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from labs import replays, selectors, services
from labs.exceptions import BadRequest, error_answer
from labs.inside.services import session_start_on_image

log = logging.getLogger(__name__)


def api(*methods: str) -> Callable:
    """Signed-in users only, allowed methods only; errors → {"error"} (labs.exceptions.error_answer)."""

    def wrap(view: Callable) -> Callable:
        @functools.wraps(view)
        def inner(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                return JsonResponse({"error": f"method {request.method} not allowed"}, status=405)
            if not request.user.is_authenticated:
                return JsonResponse({"error": "sign in first"}, status=401)
            try:
                return view(request, *args, **kwargs)
            except Exception as exc:  # never a bare 500 page to a script
                answer = error_answer(exc)
                if answer is not None:
                    return JsonResponse({"error": answer[1]}, status=answer[0])
                log.exception("API error")
                return JsonResponse({"error": f"internal error: {type(exc).__name__}"}, status=500)

        return inner

    return wrap


def body(request: HttpRequest) -> dict:
    """The request's JSON object, or BadRequest."""
    try:
        data = json.loads(request.body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("expected a JSON object")
    return data


def field(data: dict, name: str) -> str:
    """A required string field."""
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"missing string field {name!r}")
    return value


def geometry(data: dict) -> tuple[int, int]:
    """The terminal's (cols, rows) the page asks for; 80x24 when it does not say."""
    cols, rows = data.get("cols", 80), data.get("rows", 24)
    if not (isinstance(cols, int) and isinstance(rows, int) and 0 < cols <= 1000 and 0 < rows <= 500):
        raise BadRequest("cols and rows must be whole numbers (1-1000 columns, 1-500 rows)")
    return cols, rows


@api("GET")
def labs_list(request: HttpRequest) -> HttpResponse:
    return JsonResponse(selectors.lab_list(lang=request.LANGUAGE_CODE), safe=False)


@api("GET")
def labs_detail(request: HttpRequest, slug: str) -> HttpResponse:
    return JsonResponse(selectors.lab_detail(user=request.user, slug=slug, lang=request.LANGUAGE_CODE))


@api("GET", "POST")
def sessions(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return JsonResponse([selectors.session_view(s) for s in selectors.live_sessions(user=request.user)], safe=False)
    data = body(request)
    cols, rows = geometry(data)
    lab = selectors.lab_for(user=request.user, slug=field(data, "lab"))  # previewers may start drafts
    if data.get("image"):  # one of the user's own committed images (docs/inside.md)
        session, created = session_start_on_image(user=request.user, lab=lab, ref=field(data, "image"))
    else:
        session, created = services.session_start(user=request.user, lab=lab, cols=cols, rows=rows)
    services.session_lang_remember(sid=session.id, lang=request.LANGUAGE_CODE)
    return JsonResponse(selectors.session_view(session), status=201 if created else 200)


@api("GET", "DELETE")
def session_detail(request: HttpRequest, sid: str) -> HttpResponse:
    session = selectors.session_of_user(user=request.user, sid=sid)
    if request.method == "DELETE":
        services.session_stop(session=session)
        return HttpResponse(status=204)
    services.session_lang_remember(sid=session.id, lang=request.LANGUAGE_CODE)  # for auto-checks
    if services.session_verify_host(sid=session.id):
        session.refresh_from_db()
    return JsonResponse(selectors.session_view(session))


@api("POST")
def session_check(request: HttpRequest, sid: str) -> HttpResponse:
    """202 at once: the result comes over the session's WebSocket ("check"). With
    `?wait=1` (scripts, tests) the answer waits for it: 200 {"passed", "message"}."""
    session = selectors.session_of_user(user=request.user, sid=sid)
    services.session_lang_remember(sid=session.id, lang=request.LANGUAGE_CODE)
    wait = request.GET.get("wait") == "1"
    result = services.session_check(session=session, step_key=field(body(request), "step"), lang=request.LANGUAGE_CODE,
                                    wait=wait)
    if result is None:
        return JsonResponse({"queued": True}, status=202)
    return JsonResponse({"passed": result.passed, "message": result.message})


@api("POST")
def session_reset(request: HttpRequest, sid: str) -> HttpResponse:
    services.session_reset(session=selectors.session_of_user(user=request.user, sid=sid), lang=request.LANGUAGE_CODE)
    return HttpResponse(status=202)


@api("POST")
def session_extend(request: HttpRequest, sid: str) -> HttpResponse:
    session = services.session_extend(session=selectors.session_of_user(user=request.user, sid=sid))
    return JsonResponse(selectors.session_view(session))


@api("GET")
def session_recording(request: HttpRequest, sid: str) -> HttpResponse:
    """The session's asciicast v2 recording (owner, or someone allowed to watch)."""
    session, _ = selectors.session_for_viewer(user=request.user, sid=sid)
    cast = selectors.recording_of(session=session)
    response = HttpResponse(cast, content_type="application/x-asciicast; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="{session.id}.cast"'
    return response


@api("GET")
def session_markers(request: HttpRequest, sid: str) -> HttpResponse:
    """The replay's timeline: check results and step changes, and when the trainee got stuck."""
    session, _ = selectors.session_for_viewer(user=request.user, sid=sid)
    return JsonResponse(replays.replay_markers(session=session, lang=request.LANGUAGE_CODE))
