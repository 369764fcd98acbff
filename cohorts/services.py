"""Writes: cohorts, assignments, joining; instructors acting on trainees' sandboxes;
live dashboard updates through the channel layer."""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from datetime import datetime

from celery import current_app
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from cohorts import selectors
from cohorts.exceptions import BadRequest, Forbidden, NotFound
from cohorts.models import Cohort, CohortLab, Membership, new_invite_code
from labs import services as lab_services
from labs.events import DIRTY_KEY, FLUSH_KEY, flush_queue
from labs.exceptions import Conflict
from labs.models import Lab, Session, Step
from labs.redis import sync_redis
from labs.selectors import display_name, lab_visible
from labs.i18n import say

log = logging.getLogger(__name__)


def cohort_group(cohort_id: int) -> str:
    """Channel-layer group of a cohort's open dashboards."""
    return f"cohort.{cohort_id}"


def _labs(slugs: list[str], user: AbstractBaseUser | None = None) -> list[Lab]:
    """The labs by slug; with `user`, only labs that user may see (another author's
    unpublished lab is as missing as one that does not exist)."""
    found = {lab.slug: lab for lab in Lab.objects.filter(slug__in=slugs, draft_of__isnull=True)
             if user is None or lab_visible(user=user, lab=lab)}
    missing = [s for s in slugs if s not in found]
    if missing:
        raise NotFound(say(f"没有这些实验：{', '.join(missing)}。", f"No such labs: {', '.join(missing)}"))
    return [found[s] for s in slugs]


def cohort_create(*, owner: AbstractBaseUser, name: str, lab_slugs: list[str],
                  due: dict[str, datetime] | None = None) -> Cohort:
    """A new cohort run by `owner` (an instructor), with labs assigned in the order given."""
    if not selectors.is_instructor(owner):
        raise Forbidden(say("只有讲师可以创建班级。", "Only instructors may create cohorts."))
    name = name.strip()
    if not name or len(name) > 200:
        raise BadRequest(say("班级名称需要 1–200 个字符。", "A cohort name needs 1–200 characters."))
    labs = _labs(list(dict.fromkeys(lab_slugs)), owner)
    due = due or {}
    with transaction.atomic():
        cohort = Cohort.objects.create(name=name, owner=owner)
        CohortLab.objects.bulk_create([CohortLab(cohort=cohort, lab=lab, position=i, due_at=due.get(lab.slug))
                                       for i, lab in enumerate(labs)])
    return cohort


def cohort_assign_lab(*, cohort: Cohort, lab_slug: str, due_at: datetime | None = None,
                      by: AbstractBaseUser | None = None) -> CohortLab:
    """Assign a lab (or change its due date); `by` may assign only labs they can see."""
    lab = _labs([lab_slug], by)[0]
    position = cohort.assignments.count()
    assignment, created = CohortLab.objects.get_or_create(cohort=cohort, lab=lab,
                                                          defaults={"due_at": due_at, "position": position})
    if not created and assignment.due_at != due_at:
        assignment.due_at = due_at
        assignment.save(update_fields=["due_at"])
    return assignment


def cohort_unassign_lab(*, cohort: Cohort, lab_slug: str) -> None:
    """Take a lab off the cohort; trainees' progress on it is kept."""
    CohortLab.objects.filter(cohort=cohort, lab__slug=lab_slug).delete()


def cohort_new_code(*, cohort: Cohort) -> Cohort:
    """A fresh invite code: the old code and link stop working."""
    cohort.invite_code = new_invite_code()
    cohort.save(update_fields=["invite_code"])
    return cohort


def cohort_set_joining(*, cohort: Cohort, open_: bool) -> Cohort:
    """Open or close joining by code or link."""
    cohort.joining_open = open_
    cohort.save(update_fields=["joining_open"])
    return cohort


def cohort_join(*, user: AbstractBaseUser, code: str) -> tuple[Cohort, bool]:
    """Join the cohort with this invite code as a trainee; (cohort, newly joined)."""
    cohort = Cohort.objects.filter(invite_code=code.strip().upper()).first()
    if cohort is None:
        raise NotFound(say("邀请码无效。", "That invite code is not valid; check it with your instructor."))
    if selectors.teaches(user=user, cohort=cohort) and not selectors.is_admin(user):
        raise BadRequest(say("你是这个班级的讲师。", "You run this cohort; trainees join it."))
    if Membership.objects.filter(cohort=cohort, user=user).exists():
        return cohort, False
    if not cohort.joining_open:
        raise Conflict(say("这个班级已停止加入。", "This cohort is closed to new trainees."))
    try:
        with transaction.atomic():
            Membership.objects.create(cohort=cohort, user=user, role=Membership.Role.TRAINEE)
    except IntegrityError:  # joined twice at once
        return cohort, False
    transaction.on_commit(lambda: _dashboards_later(user_id=user.id, cohort_id=cohort.id))  # joins appear live
    return cohort, True


def _dashboards_later(**kwargs: object) -> None:
    """dashboards_notify as a Celery task (cohorts.tasks, sent by name), off the request path."""
    try:
        current_app.send_task("cohorts.tasks.dashboards_update", kwargs=kwargs, expires=120)
    except Exception:
        log.warning("could not queue a dashboards update %s", kwargs, exc_info=True)


def _name(user: AbstractBaseUser | None) -> str:
    return display_name(user) if user is not None else "?"


def cohort_session_extend(*, cohort: Cohort, sid: str, by: AbstractBaseUser | None = None) -> Session:
    """An instructor extends a trainee's sandbox (within the lab's limit); the trainee is told who."""
    name = _name(by)
    return lab_services.session_extend(
        session=selectors.cohort_session(cohort=cohort, sid=sid),
        message=f"讲师 {name} 延长了你的沙箱时间。Your instructor {name} gave your sandbox more time.")


def cohort_session_stop(*, cohort: Cohort, sid: str, by: AbstractBaseUser | None = None) -> Session:
    """An instructor stops a trainee's sandbox; the trainee is told who (progress is kept)."""
    session = selectors.cohort_session(cohort=cohort, sid=sid)
    name = _name(by)
    lab_services.session_stop(session=session, by="instructor", who=name,  # the trainee's page says so
                              message=f"讲师 {name} 停止了你的沙箱，进度已保留。"
                                      f"Your instructor {name} stopped your sandbox; your progress is kept.")
    return session


_sender: tuple[int, asyncio.AbstractEventLoop] | None = None
_sender_lock = threading.Lock()


def _sender_loop() -> asyncio.AbstractEventLoop:
    """This process's one event loop for the channel layer, on a thread of its own.
    channels_redis keeps its Redis connections per event loop, and async_to_sync makes a
    new loop for every call from sync code: a connection and a loop per dashboard row,
    measured at 2.5 ms of CPU a row against 0.7 ms here (./lab bench --only dashboard).
    A forked process (Celery's prefork children) makes its own."""
    global _sender
    with _sender_lock:
        if _sender is None or _sender[0] != os.getpid() or _sender[1].is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="dashboards-send", daemon=True).start()
            _sender = (os.getpid(), loop)
        return _sender[1]


def _send(cohort_id: int, event: dict) -> None:
    layer = get_channel_layer()
    if layer is not None:
        message = {"type": "cohort.event", "event": event}
        asyncio.run_coroutine_threadsafe(layer.group_send(cohort_group(cohort_id), message), _sender_loop()).result(30)


def dashboards_notify(*, user_id: int | None = None, lab_id: int | None = None, step: Step | None = None,
                      sid: str | None = None, cohort_id: int | None = None) -> int:
    """Send a trainee's changed row to every open dashboard of the cohorts concerned: after a
    change of their progress on a lab (user_id + lab_id, or step), of a sandbox (sid), or when
    they join a cohort (user_id + cohort_id: a row per assigned lab). Reads that trainee's
    rows alone, so the work does not grow with the cohort; the page recomputes the lab's
    numbers itself. Returns how many rows were sent."""
    if sid is not None:
        found = Session.objects.filter(id=sid).values("user_id", "lab_id").first()
        if found is None:
            return 0
        user_id, lab_id = found["user_id"], found["lab_id"]
    elif step is not None:
        lab_id = step.lab_id
    if user_id is None or (lab_id is None and cohort_id is None):
        raise ValueError("dashboards_notify needs user_id with lab_id (or step), sid, or user_id with cohort_id")
    user = get_user_model().objects.filter(id=user_id).first()
    if user is None:
        return 0
    if cohort_id is not None:
        targets = [(cohort_id, lab) for lab in Lab.objects.filter(assignments__cohort_id=cohort_id)
                   .order_by("assignments__position")]
    else:
        lab = Lab.objects.filter(id=lab_id).first()
        targets = [(cid, lab) for cid in selectors.cohorts_of_trainee(user_id=user_id, lab_id=lab_id)] if lab else []
    rows: dict[int, dict] = {}
    for cid, lab in targets:
        if lab.id not in rows:
            rows[lab.id] = selectors.trainee_lab_row(user=user, lab=lab)
        _send(cid, {"type": "row", **rows[lab.id]})
    return len(targets)


def dashboards_flush(*, budget_s: float = 10.0) -> int:
    """Send every row labs.events marked changed since the last flush began, each read as it
    is now; returns how many rows went out. Up to 100 marked rows (trainee × lab) are read
    together with a fixed number of queries (selectors.trainee_lab_rows), never the whole
    cohort. Past `budget_s` the rest is left marked for the next flush."""
    r = sync_redis()
    r.delete(FLUSH_KEY)  # an event from now on queues the next flush
    deadline, sent = time.monotonic() + budget_s, 0
    while time.monotonic() < deadline and (batch := r.spop(DIRTY_KEY, 100)):
        pairs = {tuple(int(x) for x in member.decode().split(":")) for member in batch}
        for found in selectors.trainee_lab_rows(pairs=pairs).values():
            for cohort_id in found["cohorts"]:
                _send(cohort_id, {"type": "row", **found["row"]})
                sent += 1
    if r.scard(DIRTY_KEY):
        flush_queue()
    return sent


def dashboards_notify_safely(**kwargs) -> None:
    """dashboards_notify for callers that must never fail because of it (a trainee's check)."""
    try:
        dashboards_notify(**kwargs)
    except Exception:
        log.warning("could not update cohort dashboards (%s)", kwargs, exc_info=True)


def instructor_grant(*, username: str) -> None:
    """Put a user in the `instructors` group (LookupError when there is no such user)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise LookupError(f"no user named {username!r}")
    user.groups.add(Group.objects.get_or_create(name=selectors.INSTRUCTORS_GROUP)[0])


def ops_session_extend(*, sid: str, by: AbstractBaseUser) -> Session:
    """An admin extends any live sandbox from the overview; its trainee is told who."""
    session = _ops_session(sid=sid, by=by)
    name = _name(by)
    return lab_services.session_extend(
        session=session, message=f"管理员 {name} 延长了你的沙箱时间。The administrator {name} gave your sandbox more time.")


def ops_session_stop(*, sid: str, by: AbstractBaseUser) -> Session:
    """An admin stops any live sandbox from the overview; its trainee is told who (progress is kept)."""
    session = _ops_session(sid=sid, by=by)
    name = _name(by)
    lab_services.session_stop(session=session, message=f"管理员 {name} 停止了你的沙箱，进度已保留。"
                                                       f"The administrator {name} stopped your sandbox; your progress is kept.")
    return session


def _ops_session(*, sid: str, by: AbstractBaseUser) -> Session:
    if not selectors.is_admin(by):
        raise Forbidden(say("只有管理员可以这样做。", "Only admins may do that."))
    session = Session.objects.select_related("lab", "user").filter(id=sid).first()
    if session is None:
        raise NotFound(say("没有这个会话。", "No such session."))
    return session
