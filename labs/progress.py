"""Where a trainee stands on a lab's steps: the one home of the progress rules.

A step is *started* when it first becomes the trainee's current step (the first one
not passed yet) or when they first act on it, and *passed* the first time its check,
an automatic check, a right quiz answer (steps with only a quiz) or being read (steps
with neither) says so — one rule (_first_pass), whatever passed it. Both the sessions
(labs.services, labs.tasks) and the learning features (labs.learning) use these; this
module uses neither.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from labs import events
from labs.exceptions import NotFound
from labs.models import CheckRecord, Lab, Step, StepProgress
from labs.signals import step_passed


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a step's check."""

    passed: bool
    message: str


def step_of(*, lab: Lab, key: str) -> Step:
    """A current (not retired) step of the lab, or NotFound (the one step lookup)."""
    step = lab.steps.filter(key=key, retired=False).first()
    if step is None:
        raise NotFound(f"lab {lab.slug!r} has no step {key!r}")
    return step


def passes_by(step: Step) -> str:
    """How a step is passed: "check", "quiz" (only a quiz) or "read" (neither)."""
    if step.data.get("check"):
        return "check"
    return "quiz" if step.data.get("quiz") else "read"


def current_step(*, user: AbstractBaseUser, lab: Lab) -> Step | None:
    """The trainee's current step: the first one not passed yet."""
    passed = StepProgress.objects.filter(user=user, step__lab=lab, passed_at__isnull=False).values("step_id")
    return lab.steps.filter(retired=False).exclude(id__in=passed).order_by("position").first()


def step_start(*, user: AbstractBaseUser, step: Step) -> StepProgress:
    """The trainee's progress row of a step, created (= started now) on first need."""
    progress, _ = StepProgress.objects.get_or_create(user=user, step=step)
    return progress


def progress_here(*, user: AbstractBaseUser, lab: Lab) -> Step | None:
    """The trainee is looking at the lab: start their current step; returns it (None when done)."""
    step = current_step(user=user, lab=lab)
    if step is not None:
        step_start(user=user, step=step)
    return step


def progress_changed(*, user: AbstractBaseUser, step: Step) -> None:
    """Cohort dashboards show checks, hints, solutions, answers and passes live (labs.events)."""
    events.progress_changed(user_id=user.id, lab_id=step.lab_id)


def _first_pass(progress: StepProgress, *, user: AbstractBaseUser, step: Step, by: str, message: str) -> bool:
    """The one "first pass marks passed" rule, on the locked row: True when it was the first."""
    if progress.passed_at is not None:
        return False
    progress.passed_at = timezone.now()
    progress.passed_by = by
    if message:
        progress.last_message = message[:2000]
    progress.save(update_fields=["passed_at", "passed_by", "last_message"])
    if by == "auto-check":  # a pressed check is recorded by progress_record_check
        CheckRecord.objects.create(user=user, step=step, passed=True, by=by)
    step_passed.send(sender=Step, user=user, step=step)
    return True


def progress_mark_passed(*, user: AbstractBaseUser, step: Step, by: str, message: str = "") -> StepProgress:
    """Mark a step passed (the first time only) and start the trainee's next step."""
    with transaction.atomic():
        progress = StepProgress.objects.select_for_update().filter(pk=step_start(user=user, step=step).pk).get()
        _first_pass(progress, user=user, step=step, by=by, message=message)
    progress_here(user=user, lab=step.lab)
    progress_changed(user=user, step=step)
    return progress


def progress_record_check(*, user: AbstractBaseUser, step: Step, result: CheckResult, by: str) -> StepProgress:
    """Count a pressed check's attempt (kept for the replay's markers); a pass marks the
    step passed (the page's next "I am here" starts the next step, as before)."""
    with transaction.atomic():
        progress = StepProgress.objects.select_for_update().filter(pk=step_start(user=user, step=step).pk).get()
        progress.attempts += 1
        progress.last_message = result.message[:2000]
        progress.save(update_fields=["attempts", "last_message"])
        CheckRecord.objects.create(user=user, step=step, passed=result.passed, by=by)
        if result.passed:
            _first_pass(progress, user=user, step=step, by=by, message=result.message)
    progress_changed(user=user, step=step)
    return progress
