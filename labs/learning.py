"""The learning experience: hints, solutions, quiz answers, progress views, checks
and auto-checks, step setup.

Services (writes) and selectors (reads) of one feature, on the progress rules of
labs.progress ("where a trainee stands": started, passed). Time spent on a step is
wall-clock time from started to passed (or to now while it is open), breaks included.
Its Celery tasks are in labs.tasks (they call one function here each); this module
sends them by name and never imports them.
"""
from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from labs.checks import step_check_run
from labs.exceptions import BadRequest, Conflict, NotFound
from labs.hostconfig import host_config
from labs.models import Lab, QuizAnswer, Session, Step, StepProgress
from labs.progress import (CheckResult, current_step, passes_by, progress_changed, progress_mark_passed,
                           progress_record_check, step_start)
from labs.redis import sync_redis
from labs.selectors import can_author, lab_summary, pick, pick_quiz, render_inline, step_view
from labs.selectors import lab_for as _lab_for
from labs.services import session_broadcast, session_lang
from sandbox.service import sandbox_exec

log = logging.getLogger(__name__)

# Failed checks after which the page shows the solution without being asked.
SOLUTION_AFTER_FAILURES = 3
# Seconds between two automatic checks of one session (settings.LAB_AUTO_CHECK_SECONDS).
AUTO_CHECK_SECONDS = 10


# ---- Who may see what ------------------------------------------------------------

def can_preview(user: AbstractBaseUser) -> bool:
    """Instructors and admins may upload and preview labs (their own; admins every one)."""
    return can_author(user)


def lab_for(*, user: AbstractBaseUser, slug: str) -> Lab:
    """A lab this user may learn from (labs.selectors.lab_for: the one lab-lookup rule)."""
    return _lab_for(user=user, slug=slug)


# ---- Services ------------------------------------------------------------------------

def hint_reveal(*, user: AbstractBaseUser, step: Step, lang: str) -> dict:
    """Reveal the trainee's next hint of a step; {"index", "text", "remaining"}."""
    hints = step.data.get("hints") or []
    with transaction.atomic():
        progress = StepProgress.objects.select_for_update().filter(pk=step_start(user=user, step=step).pk).get()
        if progress.hints_used >= len(hints):
            raise Conflict(_("This step has no more hints.") if hints else _("This step has no hints."))
        index = progress.hints_used
        progress.hints_used += 1
        progress.save(update_fields=["hints_used"])
    progress_changed(user=user, step=step)
    text = pick(hints[index], lang)
    return {"index": index, "text": text, "html": render_inline(text), "remaining": len(hints) - index - 1}


def solution_reveal(*, user: AbstractBaseUser, step: Step) -> dict:
    """Show a step's solution (a shell script) and note that the trainee saw it."""
    solution = step.data.get("solution")
    if not solution:
        raise NotFound(_("This step has no solution."))
    StepProgress.objects.filter(pk=step_start(user=user, step=step).pk).update(solution_used=True)
    progress_changed(user=user, step=step)
    return {"solution": solution}


def quiz_answer(*, user: AbstractBaseUser, step: Step, answer: object, lang: str) -> dict:
    """Grade and record a quiz answer; a right one passes a step that has only a quiz."""
    from labs.labfile.spec import Quiz, QuizChoice, Text

    data = step.data.get("quiz")
    if not data:
        raise BadRequest(f"step {step.key!r} has no quiz")
    choices = tuple(QuizChoice(id=c["id"], text=Text(**c["text"]), correct=c["correct"]) for c in data.get("choices") or ())
    quiz = Quiz(kind=data["kind"], question=Text(**data["question"]), choices=choices, pattern=data.get("pattern"),
                explanation=Text(**data.get("explanation") or {}))
    answer = _answer_shape(quiz, answer)
    correct = quiz.is_correct(answer)
    step_start(user=user, step=step)
    QuizAnswer.objects.create(user=user, step=step, answer=answer, correct=correct)
    if correct and passes_by(step) == "quiz":
        progress_mark_passed(user=user, step=step, by="quiz")
    else:
        progress_changed(user=user, step=step)  # the answer distribution changed
    explanation = quiz.explanation.get(lang)
    return {"correct": correct, "explanation": explanation, "explanation_html": render_inline(explanation)}


def _answer_shape(quiz, answer: object) -> str | list[str]:
    """The answer as the quiz kind expects it, or BadRequest."""
    ids = {c.id for c in quiz.choices}
    if quiz.kind == "text":
        if not isinstance(answer, str) or len(answer) > 1000:
            raise BadRequest("answer: expected a text of at most 1000 characters")
        return answer
    if quiz.kind == "single":
        if not isinstance(answer, str) or answer not in ids:
            raise BadRequest(f"answer: expected one of {sorted(ids)}")
        return answer
    if not isinstance(answer, list) or not all(isinstance(a, str) and a in ids for a in answer):
        raise BadRequest(f"answer: expected a list of choices from {sorted(ids)}")
    return sorted(set(answer))


def step_mark_read(*, user: AbstractBaseUser, step: Step) -> StepProgress:
    """Pass a step that has neither a check nor a quiz: the trainee read it."""
    if passes_by(step) != "read":
        raise Conflict(f"step {step.key!r} is passed by its {passes_by(step)}, not by reading it")
    return progress_mark_passed(user=user, step=step, by="read")


# ---- Selectors -------------------------------------------------------------------------

def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _seconds(start: datetime | None, end: datetime | None) -> int | None:
    return max(0, int((end - start).total_seconds())) if start and end else None


def step_progress_view(step: Step, progress: StepProgress | None, *, now: datetime) -> dict:
    """One step's progress as the API gives it."""
    p = progress
    return {
        "step": step.key, "position": step.position,
        "started_at": _iso(p and p.started_at), "passed": bool(p and p.passed_at),
        "passed_at": _iso(p and p.passed_at), "passed_by": (p.passed_by if p else "") or None,
        "attempts": p.attempts if p else 0, "hints_used": p.hints_used if p else 0,
        "hints": len(step.data.get("hints") or []), "solution_used": bool(p and p.solution_used),
        "seconds": _seconds(p and p.started_at, (p and p.passed_at) or (p and now)),
    }


def lab_progress(*, user: AbstractBaseUser, lab: Lab) -> dict:
    """The trainee's progress on a lab: per step, and started / completed for the lab."""
    now = timezone.now()
    steps = list(lab.steps.filter(retired=False).order_by("position"))
    rows = {p.step_id: p for p in StepProgress.objects.filter(user=user, step__in=steps)}
    views = [step_progress_view(s, rows.get(s.id), now=now) for s in steps]
    started = min((p.started_at for p in rows.values()), default=None)
    done = bool(steps) and all(v["passed"] for v in views)
    completed = max(rows[s.id].passed_at for s in steps) if done else None
    current = next((v["step"] for v in views if not v["passed"]), None)
    return {
        "lab": lab.slug, "steps_total": len(steps), "steps_passed": sum(v["passed"] for v in views),
        "current": current, "started_at": _iso(started), "completed": done, "completed_at": _iso(completed),
        "seconds": _seconds(started, completed or (started and now)), "steps": views,
    }


def progress_all(*, user: AbstractBaseUser) -> list[dict]:
    """The trainee's progress on every lab they have started, in catalogue order."""
    labs = Lab.objects.filter(steps__progress__user=user).distinct()
    return [lab_progress(user=user, lab=lab) for lab in labs]


def step_state(*, user: AbstractBaseUser, steps: list[Step], lang: str) -> dict[str, dict]:
    """What the lab page restores per step: passed, revealed hints, solution, last quiz answer."""
    rows = {p.step_id: p for p in StepProgress.objects.filter(user=user, step__in=steps)}
    answers: dict[int, QuizAnswer] = {}
    for a in QuizAnswer.objects.filter(user=user, step__in=steps).order_by("at"):
        answers[a.step_id] = a
    state = {}
    for step in steps:
        p = rows.get(step.id)
        hints = step.data.get("hints") or []
        answer = answers.get(step.id)
        quiz = step.data.get("quiz") or {}
        state[step.key] = {
            "passed": bool(p and p.passed_at), "passed_by": p.passed_by if p else "",
            "attempts": p.attempts if p else 0,
            "hints_shown": [render_inline(pick(h, lang)) for h in hints[:p.hints_used]] if p else [],
            "solution": step.data.get("solution") if p and p.solution_used else None,
            "answer": None if answer is None else {
                "answer": answer.answer, "correct": answer.correct,
                "explanation_html": render_inline(pick_quiz(quiz.get("explanation"), lang))},
        }
    return state


def lab_page(*, user: AbstractBaseUser, lab: Lab, lang: str) -> dict:
    """The lab page's data: the lab, its steps with the trainee's state, their progress.
    A read: the page starts the current step itself ("I am here", POST …/progress)."""
    steps = list(lab.steps.filter(retired=False).order_by("position"))
    state = step_state(user=user, steps=steps, lang=lang)
    data = lab_summary(lab, lang)
    data["published"] = lab.published
    data["steps"] = [{**step_view(s, lang), **state[s.key], "passes_by": passes_by(s)} for s in steps]
    data["progress"] = lab_progress(user=user, lab=lab)
    return data


# ---- Auto-check --------------------------------------------------------------------------

def _lease_key(sid: str) -> str:
    return f"lab:autocheck:{sid}"


def _autocheck_step(session: Session | None) -> Step | None:
    """The step to check automatically now: the current step of a ready session, if auto-check."""
    if session is None or session.state != Session.State.READY:
        return None
    step = current_step(user=session.user, lab=session.lab)
    return step if step is not None and step.data.get("auto_check") and step.data.get("check") else None


def _send_autocheck(session: Session, interval: float) -> None:
    from celery import current_app as app  # labs.tasks.auto_check, sent by name

    app.send_task("labs.learning.auto_check", args=[session.id], kwargs={"interval": interval},
                  queue=f"host.{session.host}.checks", countdown=interval, expires=interval * 3 + 30)


def autocheck_kick(*, session: Session) -> bool:
    """Start polling a session's current auto-check step, unless a poll is already on; True if started."""
    if _autocheck_step(session) is None:
        return False
    interval = float(getattr(settings, "LAB_AUTO_CHECK_SECONDS", AUTO_CHECK_SECONDS))
    # One poll chain per session: the lease outlives a missed beat, then a kick restarts it.
    if not sync_redis().set(_lease_key(session.id), interval, nx=True, ex=int(interval * 3) + 5):
        return False
    _send_autocheck(session, interval)
    return True


def autocheck_run(*, sid: str, interval: float) -> str:
    """One poll, on the session's host: check its current auto-check step, pass it, poll again."""
    session = Session.objects.select_related("lab", "user").filter(id=sid).first()
    step = _autocheck_step(session)
    if step is None:
        sync_redis().delete(_lease_key(sid))
        return "idle"
    result = step_check_run(sid=sid, step_id=step.id, lang=session_lang(sid=sid))
    outcome = "waiting"
    if result["passed"]:
        progress_mark_passed(user=session.user, step=step, by="auto-check", message=result["message"])
        session_broadcast(sid=sid, event={"type": "check", "step": step.key, "passed": True,
                                          "message": result["message"], "by": "auto-check"})
        step_setup_kick(session=session)  # the next step's setup, without waiting for the page
        outcome = "passed"
        if _autocheck_step(session) is None:
            sync_redis().delete(_lease_key(sid))
            return outcome
    sync_redis().set(_lease_key(sid), interval, ex=int(interval * 3) + 5)
    _send_autocheck(session, interval)
    return outcome


def step_check(*, sid: str, step_id: int, lang: str | None = None, by: str = "check") -> dict:
    """A pressed Check, on the session's host: run it, record the attempt (a pass marks
    the step passed and prepares the next one), and tell the session's pages, as an
    auto-check does; {"passed", "message"}."""
    result = step_check_run(sid=sid, step_id=step_id, lang=lang)
    session = Session.objects.select_related("lab", "user").filter(id=sid).first()
    step = Step.objects.get(id=step_id)
    if session is None:
        return result
    progress_record_check(user=session.user, step=step, by=by,
                          result=CheckResult(passed=bool(result["passed"]), message=result["message"]))
    session_broadcast(sid=sid, event={"type": "check", "step": step.key, "passed": bool(result["passed"]),
                                      "message": result["message"], "by": by})
    if result["passed"]:
        session_follow(session=session)
    return result


# ---- Step setup ---------------------------------------------------------------------------

def _setup_key(session: Session, step: Step) -> str:
    # ready_at changes on a reset: a fresh sandbox gets its step setups again.
    generation = session.ready_at.timestamp() if session.ready_at else 0
    return f"lab:setup:{session.id}:{generation}:{step.id}"


def step_setup_kick(*, session: Session) -> bool:
    """Run the current step's `setup` script in the sandbox, once per sandbox; True if sent."""
    from celery import current_app as app  # labs.tasks.step_setup, sent by name

    if session.state != Session.State.READY:
        return False
    step = current_step(user=session.user, lab=session.lab)
    if step is None or not step.data.get("setup"):
        return False
    if not sync_redis().set(_setup_key(session, step), 1, nx=True, ex=86400):
        return False
    app.send_task("labs.learning.step_setup", args=[session.id, step.id], queue=f"host.{session.host}", expires=120)
    return True


def step_setup_run(*, sid: str, step_id: int) -> int:
    """A step's setup script, run inside the sandbox as the step begins; returns its exit code."""
    step = Step.objects.get(id=step_id)
    result = sandbox_exec(host_config(), sid, step.data["setup"], timeout=60)
    if result.exit_code != 0:
        log.warning("setup of step %s in session %s exited %s: %s", step.key, sid, result.exit_code, result.output[-500:])
    return result.exit_code


def session_follow(*, session: Session) -> None:
    """The trainee is at their current step in a live sandbox: prepare it and watch it."""
    step_setup_kick(session=session)
    autocheck_kick(session=session)
