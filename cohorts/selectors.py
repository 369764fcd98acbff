"""Reads: who may see which cohort, and the cohort's progress as the dashboard shows it.

Cell states (docs/cohorts.md):
- ``not_started``: no progress row for the step yet;
- ``passed``: the step's check passed;
- ``stuck``: not passed, at least COHORT_STUCK_ATTEMPTS failed checks, and at least
  COHORT_STUCK_MINUTES since the step started;
- ``working``: anything else.

A step *starts* when the trainee could first work on it — the previous step passed (the
first step: their first sandbox of the lab) — or at their first check or hint on it,
whichever is earlier. Time spent is wall-clock time from that start to the pass (or now).
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Min, Q, QuerySet
from django.utils import timezone

from cohorts.exceptions import Forbidden, NotFound
from cohorts.models import Cohort, CohortLab, Membership
from labs.models import Lab, Session, Step, StepProgress
from labs.selectors import INSTRUCTORS_GROUP, display_name, is_admin, is_instructor, pick  # noqa: F401  (the one rule, re-exported)
from labs.i18n import say
STATES = ("not_started", "working", "stuck", "passed")


def stuck_thresholds() -> dict:
    """(failed attempts, minutes) after which a trainee counts as stuck on a step."""
    return {"attempts": int(getattr(settings, "COHORT_STUCK_ATTEMPTS", 3)),
            "minutes": int(getattr(settings, "COHORT_STUCK_MINUTES", 10))}


def _teaching_q(user: AbstractBaseUser) -> Q:
    return Q(owner=user) | Q(memberships__user=user, memberships__role=Membership.Role.INSTRUCTOR)


def cohorts_teaching(*, user: AbstractBaseUser) -> QuerySet[Cohort]:
    """Cohorts this user runs (admins: every cohort)."""
    qs = Cohort.objects.select_related("owner")
    return qs.all() if is_admin(user) else qs.filter(_teaching_q(user)).distinct()


def cohorts_joined(*, user: AbstractBaseUser) -> QuerySet[Cohort]:
    """Cohorts this user is a trainee in."""
    return Cohort.objects.filter(memberships__user=user, memberships__role=Membership.Role.TRAINEE).select_related("owner")


def teaches(*, user: AbstractBaseUser, cohort: Cohort) -> bool:
    """Does this user run the cohort (or is an admin)?"""
    if is_admin(user):
        return True
    return cohort.owner_id == user.id or Membership.objects.filter(
        cohort=cohort, user=user, role=Membership.Role.INSTRUCTOR).exists()


def cohort_get(*, cohort_id: int) -> Cohort:
    """A cohort by id, or NotFound."""
    try:
        return Cohort.objects.select_related("owner").get(id=cohort_id)
    except Cohort.DoesNotExist:
        raise NotFound("no such cohort") from None


def cohort_for_instructor(*, user: AbstractBaseUser, cohort_id: int) -> Cohort:
    """A cohort the user runs; Forbidden for anyone else."""
    cohort = cohort_get(cohort_id=cohort_id)
    if not teaches(user=user, cohort=cohort):
        raise Forbidden(say("只有本班级的讲师可以这样做。", "Only this cohort's instructors may do that."))
    return cohort


def cohort_for_viewer(*, user: AbstractBaseUser, cohort_id: int) -> tuple[Cohort, bool]:
    """(cohort, teaching): its instructors see everyone, its trainees only themselves."""
    cohort = cohort_get(cohort_id=cohort_id)
    if teaches(user=user, cohort=cohort):
        return cohort, True
    if Membership.objects.filter(cohort=cohort, user=user, role=Membership.Role.TRAINEE).exists():
        return cohort, False
    raise Forbidden(say("你不在这个班级中。", "You are not in this cohort."))


def instructor_can_watch(*, instructor: AbstractBaseUser, trainee_id: int, lab_id: int) -> bool:
    """True when the instructor runs a cohort the trainee is in and the lab is assigned to it."""
    return Cohort.objects.filter(_teaching_q(instructor)).filter(
        id__in=Membership.objects.filter(user_id=trainee_id, role=Membership.Role.TRAINEE).values("cohort_id"),
    ).filter(assignments__lab_id=lab_id).exists()


def session_watch_rule(*, user: AbstractBaseUser, session: Session) -> bool:
    """labs.selectors.can_watch's rule for cohorts (registered in CohortsConfig.ready())."""
    return instructor_can_watch(instructor=user, trainee_id=session.user_id, lab_id=session.lab_id)


def _epoch(dt: datetime | None) -> float | None:
    return round(dt.timestamp(), 1) if dt else None


def _cell(step: Step, progress: StepProgress | None, available: datetime | None, now: datetime, limits: dict) -> dict:
    """One trainee × step cell of the matrix."""
    if progress is None:
        return {"step": step.key, "state": "not_started", "attempts": 0, "hints": 0, "solution": False,
                "seconds": 0, "start": None, "passed_at": None}
    start = min(progress.started_at, available) if available else progress.started_at
    end = progress.passed_at or now
    if progress.passed_at:
        state = "passed"
    elif progress.attempts >= limits["attempts"] and (now - start).total_seconds() >= limits["minutes"] * 60:
        state = "stuck"
    else:
        state = "working"
    return {"step": step.key, "state": state, "attempts": progress.attempts, "hints": progress.hints_used,
            "solution": progress.solution_used, "seconds": max(0, int((end - start).total_seconds())),
            "start": _epoch(start), "passed_at": _epoch(progress.passed_at)}


def _session_view(session: Session) -> dict:
    return {"id": session.id, "state": session.state, "host": session.host,
            "created_at": _epoch(session.created_at), "ended_at": _epoch(session.ended_at),
            "expires_at": _epoch(session.expires_at)}


def _who(user) -> dict:
    return {"user": user.id, "username": user.get_username(), "name": display_name(user)}


def _lab_row(user_id: int, lab, steps: list[Step], rows: dict, first: dict, live: dict, recorded: dict,
             now: datetime, limits: dict) -> dict:
    """One trainee's row of one lab: a cell per step, their live sandbox, recent recordings."""
    available, cells = first.get((user_id, lab.id)), []
    for step in steps:
        p = rows.get((user_id, step.id))
        cells.append(_cell(step, p, available, now, limits))
        available = p.passed_at if p else None
    session = live.get((user_id, lab.id))
    return {"lab": lab.slug, "session": _session_view(session) if session else None,
            "recordings": recorded[(user_id, lab.id)], "steps": cells}


def trainee_lab_row(*, user, lab, now: datetime | None = None) -> dict:
    """One trainee's row of one lab, as in cohort_progress, read with a fixed number of
    small queries on that trainee alone: the dashboards' per-event work, whatever the
    size of the cohort."""
    now = now or timezone.now()
    steps = list(Step.objects.filter(lab=lab, retired=False).order_by("position"))
    rows = {(p.user_id, p.step_id): p for p in StepProgress.objects.filter(user_id=user.id, step__lab=lab)}
    sessions = Session.objects.filter(user_id=user.id, lab=lab)
    first = {(user.id, lab.id): sessions.aggregate(first=Min("created_at"))["first"]}
    live = {(s.user_id, s.lab_id): s for s in sessions.filter(state__in=Session.LIVE_STATES).order_by("created_at")}
    recorded: dict[tuple[int, int], list[dict]] = defaultdict(list)
    recorded[(user.id, lab.id)] = [_session_view(s) for s in
                                   sessions.filter(recording__isnull=False).order_by("-created_at")[:3]]
    return {**_who(user), "lab": lab.slug,
            "row": _lab_row(user.id, lab, steps, rows, first, live, recorded, now, stuck_thresholds())}


def _progress_inputs(*, user_ids: "set[int] | list[int]", lab_ids: "set[int] | list[int]", recordings: int) -> tuple:
    """What _lab_row reads, for these trainees on these labs, in five queries: the steps
    by lab, progress rows, first start, live session and (of the newest `recordings`
    sessions) up to three recordings per (user, lab)."""
    user_ids, lab_ids = sorted(user_ids), sorted(lab_ids)
    steps: dict[int, list[Step]] = defaultdict(list)
    for step in Step.objects.filter(lab_id__in=lab_ids, retired=False).order_by("lab_id", "position"):
        steps[step.lab_id].append(step)
    rows = {(p.user_id, p.step_id): p for p in StepProgress.objects.filter(user_id__in=user_ids, step__lab_id__in=lab_ids)}
    sessions = Session.objects.filter(user_id__in=user_ids, lab_id__in=lab_ids)
    first = {(s["user_id"], s["lab_id"]): s["first"] for s in
             sessions.values("user_id", "lab_id").annotate(first=Min("created_at"))}
    live = {(s.user_id, s.lab_id): s for s in sessions.filter(state__in=Session.LIVE_STATES).order_by("created_at")}
    recorded: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for s in sessions.filter(recording__isnull=False).order_by("-created_at")[:recordings]:
        if len(recorded[(s.user_id, s.lab_id)]) < 3:
            recorded[(s.user_id, s.lab_id)].append(_session_view(s))
    return steps, rows, first, live, recorded


def trainee_lab_rows(*, pairs: set[tuple[int, int]], now: datetime | None = None) -> dict[tuple[int, int], dict]:
    """The rows (as trainee_lab_row makes them) of these (user id, lab id) pairs, with the
    cohorts each goes to, read with the same eight queries whatever the number of pairs
    and the size of their cohorts: a dashboards flush's work. {(user, lab): {"row", "cohorts"}}."""
    now = now or timezone.now()
    # Sorted: the same pairs always make the same SQL.
    user_ids, lab_ids = sorted({u for u, _ in pairs}), sorted({lab for _, lab in pairs})
    labs = Lab.objects.in_bulk(lab_ids)
    users = get_user_model().objects.in_bulk(user_ids)
    to: dict[tuple[int, int], list[int]] = defaultdict(list)
    for user_id, cohort_id, lab_id in (Membership.objects.filter(user_id__in=user_ids, role=Membership.Role.TRAINEE,
                                                                  cohort__assignments__lab_id__in=lab_ids)
                                       .values_list("user_id", "cohort_id", "cohort__assignments__lab_id").distinct()):
        to[(user_id, lab_id)].append(cohort_id)
    steps, rows, first, live, recorded = _progress_inputs(user_ids=user_ids, lab_ids=lab_ids,
                                                          recordings=50 * len(pairs))
    limits, out = stuck_thresholds(), {}
    for user_id, lab_id in pairs:
        user, lab = users.get(user_id), labs.get(lab_id)
        if user is None or lab is None or not to[(user_id, lab_id)]:
            continue
        out[(user_id, lab_id)] = {"cohorts": sorted(to[(user_id, lab_id)]), "row": {
            **_who(user), "lab": lab.slug,
            "row": _lab_row(user_id, lab, steps[lab_id], rows, first, live, recorded, now, limits)}}
    return out


def cohort_progress(*, cohort: Cohort, user_ids: list[int] | None = None, lang: str = "zh-hans",
                    now: datetime | None = None) -> dict:
    """Per trainee, per assigned lab, per step: state, attempts, hints, seconds; plus the
    trainee's live sandbox and recent recordings of each lab. `user_ids` narrows the trainees."""
    now = now or timezone.now()
    limits = stuck_thresholds()
    assignments = list(CohortLab.objects.filter(cohort=cohort).select_related("lab"))
    labs = [a.lab for a in assignments]
    members = Membership.objects.filter(cohort=cohort, role=Membership.Role.TRAINEE).select_related("user")
    if user_ids is not None:
        members = members.filter(user_id__in=user_ids)
    trainees = [m.user for m in members]
    steps, rows, first, live, recorded = _progress_inputs(user_ids={t.id for t in trainees}, lab_ids={lab.id for lab in labs},
                                                          recordings=500)

    progress = []
    for user in trainees:
        lab_rows = [_lab_row(user.id, lab, steps[lab.id], rows, first, live, recorded, now, limits) for lab in labs]
        progress.append({**_who(user), "labs": lab_rows})
    return {
        "cohort": {"id": cohort.id, "name": cohort.name},
        "generated_at": _epoch(now),
        "stuck": limits,
        "labs": [{"slug": a.lab.slug, "title": pick(a.lab.title, lang), "due_at": _epoch(a.due_at),
                  "steps": [{"key": s.key, "title": pick(s.title, lang), "quiz": bool(s.data.get("quiz"))}
                            for s in steps[a.lab_id]]} for a in assignments],
        "progress": progress,
    }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def progress_stats(progress: dict) -> dict:
    """Per lab: the funnel (trainees who reached / passed each step, and how many are on it
    in each state) and the median seconds and attempts of those who passed each step."""
    stats = {}
    for i, lab in enumerate(progress["labs"]):
        per_step = []
        for j, step in enumerate(lab["steps"]):
            cells = [row["labs"][i]["steps"][j] for row in progress["progress"]]
            passed = [c for c in cells if c["state"] == "passed"]
            per_step.append({
                "step": step["key"], "title": step["title"],
                "reached": sum(c["state"] != "not_started" for c in cells), "passed": len(passed),
                "states": {state: sum(c["state"] == state for c in cells) for state in STATES},
                "median_seconds": _median([c["seconds"] for c in passed]),
                "median_attempts": _median([c["attempts"] for c in passed]),
            })
        stats[lab["slug"]] = {"trainees": len(progress["progress"]), "steps": per_step}
    return stats


def quiz_distribution(*, cohort: Cohort, lang: str = "zh-hans") -> dict:
    """Per quiz step of the cohort's labs: how the trainees' latest answers spread over the
    choices (or right / wrong for typed answers). `available` is False when the learning
    app keeps no quiz answers."""
    from django.apps import apps

    try:
        QuizAnswer = apps.get_model("labs", "QuizAnswer")
    except LookupError:
        return {"available": False, "steps": []}
    trainees = Membership.objects.filter(cohort=cohort, role=Membership.Role.TRAINEE).values("user_id")
    quiz_steps = [s for s in Step.objects.filter(lab__assignments__cohort=cohort, retired=False)
                  .select_related("lab").order_by("lab__assignments__position", "lab_id", "position") if s.data.get("quiz")]
    latest: dict[tuple[int, int], object] = {}
    for answer in QuizAnswer.objects.filter(step__in=quiz_steps, user_id__in=trainees).order_by("at"):
        latest[(answer.user_id, answer.step_id)] = answer
    out = []
    for step in quiz_steps:
        quiz = step.data["quiz"]
        answers = [a for (_, sid), a in latest.items() if sid == step.id]
        counts: dict[str, int] = defaultdict(int)
        for a in answers:
            for choice in (a.answer if isinstance(a.answer, list) else [a.answer]):
                counts[str(choice)] += 1
        choices = [{"id": c["id"], "text": pick(c.get("text"), lang), "correct": bool(c.get("correct")),
                    "count": counts.get(c["id"], 0)} for c in quiz.get("choices") or []]
        out.append({"lab": step.lab.slug, "step": step.key, "title": pick(step.title, lang),
                    "question": pick(quiz.get("question"), lang), "kind": quiz.get("kind"), "choices": choices,
                    "answered": len(answers), "correct": sum(a.correct for a in answers)})
    return {"available": True, "steps": out}


CSV_HEADER = ["username", "name", "lab", "step", "step_title", "state", "attempts", "hints", "solution_used", "seconds"]


def progress_csv_rows(progress: dict) -> list[list]:
    """The progress as CSV rows: one per trainee × lab × step."""
    titles = {(lab["slug"], s["key"]): s["title"] for lab in progress["labs"] for s in lab["steps"]}
    rows = []
    for row in progress["progress"]:
        for lab in row["labs"]:
            for cell in lab["steps"]:
                rows.append([row["username"], row["name"], lab["lab"], cell["step"], titles.get((lab["lab"], cell["step"]), ""),
                             cell["state"], cell["attempts"], cell["hints"], int(cell["solution"]), cell["seconds"]])
    return rows


def own_progress(progress: dict) -> list[dict]:
    """A trainee's own rows (progress narrowed to them) per lab, each cell beside its step's title."""
    mine = progress["progress"][0]["labs"] if progress["progress"] else []
    return [{"slug": lab["slug"], "title": lab["title"],
             "steps": [{"title": step["title"], **cell} for step, cell in zip(lab["steps"], row["steps"])]}
            for lab, row in zip(progress["labs"], mine)]


def cohort_view(cohort: Cohort, *, teaching: bool) -> dict:
    """A cohort as the API lists it; the invite code only for its instructors."""
    data = {"id": cohort.id, "name": cohort.name, "owner": cohort.owner.get_username(),
            "created_at": cohort.created_at.isoformat(),
            "labs": [{"slug": a.lab.slug, "due_at": a.due_at.isoformat() if a.due_at else None}
                     for a in cohort.assignments.select_related("lab")]}
    if teaching:
        data.update(invite_code=cohort.invite_code, invite_url=f"/cohorts/join/{cohort.invite_code}/",
                    joining_open=cohort.joining_open,
                    trainees=cohort.memberships.filter(role=Membership.Role.TRAINEE).count())
    return data


def cohort_session(*, cohort: Cohort, sid: str) -> Session:
    """A session of one of the cohort's trainees, in one of its labs; NotFound otherwise."""
    session = Session.objects.select_related("lab", "user").filter(
        id=sid, user__cohort_memberships__cohort=cohort, user__cohort_memberships__role=Membership.Role.TRAINEE,
        lab__assignments__cohort=cohort).first()
    if session is None:
        raise NotFound(say("这个班级没有这个会话。", "No such session in this cohort."))
    return session


def cohorts_of_trainee(*, user_id: int, lab_id: int | None = None) -> list[int]:
    """Ids of the cohorts a trainee is in (that have the lab, when given)."""
    qs = Cohort.objects.filter(memberships__user_id=user_id, memberships__role=Membership.Role.TRAINEE)
    if lab_id is not None:
        qs = qs.filter(assignments__lab_id=lab_id)
    return list(qs.values_list("id", flat=True).distinct())


def watch_context(*, session: Session, lang: str = "zh-hans") -> dict:
    """What the watch view shows beside the terminal: the trainee's current step, their
    last check result and the hints they took (of this session's lab)."""
    steps = list(Step.objects.filter(lab_id=session.lab_id, retired=False).order_by("position"))
    rows = {p.step_id: p for p in StepProgress.objects.filter(user_id=session.user_id, step__in=steps)}
    index = next((i for i, s in enumerate(steps) if not (rows.get(s.id) and rows[s.id].passed_at)), None)
    current = steps[index] if index is not None else None
    here = rows.get(current.id) if current else None
    # The last check: a failed one on the current step, else the pass of the step before it.
    last = None
    if here and here.attempts:
        last = {"step": current.key, "title": pick(current.title, lang), "passed": False,
                "message": here.last_message, "attempts": here.attempts}
    else:
        before = steps[index - 1] if index else (steps[-1] if index is None and steps else None)
        done = rows.get(before.id) if before else None
        if done and done.passed_at and done.attempts:
            last = {"step": before.key, "title": pick(before.title, lang), "passed": True,
                    "message": done.last_message, "attempts": done.attempts}
    return {
        "trainee": display_name(session.user), "lab": pick(session.lab.title, lang),
        "step": {"key": current.key, "title": pick(current.title, lang), "number": index + 1, "of": len(steps)}
        if current else None,
        "done": current is None and bool(steps),
        "hints": {"used": here.hints_used if here else 0, "total": len((current.data.get("hints") or [])) if current else 0},
        "solution_used": bool(here and here.solution_used), "last_check": last,
        "hints_total_lab": sum(p.hints_used for p in rows.values()),
    }
