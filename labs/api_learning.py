"""JSON API of the learning experience: hints, solutions, quiz answers, progress.

Hints, solutions and answers need no sandbox, so they are addressed by lab and step
(`/api/labs/<slug>/steps/<step>/…`); the same actions under `/api/sessions/<id>/…`
take the step from the body and the lab from the session. Every view is thin; errors
are JSON through labs.api.api.
"""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

from labs import learning, selectors
from labs.api import api, body, field
from labs.models import Step
from labs.progress import progress_here, step_of


def _lab_step(request: HttpRequest, slug: str, step: str) -> Step:
    return step_of(lab=learning.lab_for(user=request.user, slug=slug), key=step)


def _session_step(request: HttpRequest, sid: str) -> tuple[Step, dict]:
    session = selectors.session_of_user(user=request.user, sid=sid)
    data = body(request)
    return step_of(lab=session.lab, key=field(data, "step")), data


@api("POST")
def step_hint(request: HttpRequest, slug: str, step: str) -> HttpResponse:
    return JsonResponse(learning.hint_reveal(user=request.user, step=_lab_step(request, slug, step), lang=request.LANGUAGE_CODE))


@api("POST")
def step_solution(request: HttpRequest, slug: str, step: str) -> HttpResponse:
    return JsonResponse(learning.solution_reveal(user=request.user, step=_lab_step(request, slug, step)))


@api("POST")
def step_answer(request: HttpRequest, slug: str, step: str) -> HttpResponse:
    data = body(request)
    if "answer" not in data:
        return JsonResponse({"error": "missing field 'answer'"}, status=400)
    result = learning.quiz_answer(user=request.user, step=_lab_step(request, slug, step), answer=data["answer"],
                                  lang=request.LANGUAGE_CODE)
    return JsonResponse(result)


@api("POST")
def step_read(request: HttpRequest, slug: str, step: str) -> HttpResponse:
    learning.step_mark_read(user=request.user, step=_lab_step(request, slug, step))
    return JsonResponse(learning.lab_progress(user=request.user, lab=learning.lab_for(user=request.user, slug=slug)))


@api("POST")
def session_hint(request: HttpRequest, sid: str) -> HttpResponse:
    step, _ = _session_step(request, sid)
    return JsonResponse(learning.hint_reveal(user=request.user, step=step, lang=request.LANGUAGE_CODE))


@api("POST")
def session_solution(request: HttpRequest, sid: str) -> HttpResponse:
    step, _ = _session_step(request, sid)
    return JsonResponse(learning.solution_reveal(user=request.user, step=step))


@api("POST")
def session_answer(request: HttpRequest, sid: str) -> HttpResponse:
    step, data = _session_step(request, sid)
    if "answer" not in data:
        return JsonResponse({"error": "missing field 'answer'"}, status=400)
    return JsonResponse(learning.quiz_answer(user=request.user, step=step, answer=data["answer"], lang=request.LANGUAGE_CODE))


@api("GET")
def progress(request: HttpRequest) -> HttpResponse:
    """The signed-in trainee's own progress on every lab they started."""
    return JsonResponse(learning.progress_all(user=request.user), safe=False)


@api("GET", "POST")
def lab_progress(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: own progress on a lab. POST: "I am here": start the current step, poll auto-checks."""
    lab = learning.lab_for(user=request.user, slug=slug)
    if request.method == "POST":
        progress_here(user=request.user, lab=lab)
        live = selectors.live_session_for_lab(user=request.user, lab=lab)
        if live is not None:
            learning.session_follow(session=live)
    return JsonResponse(learning.lab_progress(user=request.user, lab=lab))
