"""Writes: starting, checking and stopping sandbox sessions; progress.

The web never touches a sandbox itself: it records intent in the database and sends
a short Celery task to the worker host that owns (or will own) the sandbox.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from asgiref.sync import async_to_sync
from celery.exceptions import TimeoutError as CeleryTimeout
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from labs import selectors
from labs.exceptions import BadRequest, Conflict, NotFound, ServiceUnavailable
from labs.models import Lab, Session, Step, StepProgress
from labs.signals import step_passed

log = logging.getLogger(__name__)
# A start task not taken by its host within this time is dropped (the host is gone).
START_EXPIRES = 30


def session_group(sid: str) -> str:
    """Channel-layer group of a session's viewers."""
    return f"session.{sid}"


def session_broadcast(*, sid: str, event: dict) -> None:
    """Send a small control event to every viewer of a session."""
    layer = get_channel_layer()
    if layer is not None:
        try:
            async_to_sync(layer.group_send)(session_group(sid), {"type": "session.event", "event": event})
        except Exception:  # viewers learn the state on reconnect anyway
            log.warning("could not broadcast to session %s", sid, exc_info=True)


def _choose_host() -> str:
    """The live host with the most free places; counts come from the database, which
    knows about sessions still starting (heartbeats lag by a second or two)."""
    from django.db.models import Count

    hosts = selectors.hosts_alive()
    # Hosts are (re)starting (`./lab up` a moment ago, a relay handing over): wait for
    # one rather than turn the trainee away at once.
    deadline = time.monotonic() + settings.LAB_HOST_WAIT
    while not hosts and time.monotonic() < deadline:
        time.sleep(0.25)
        hosts = selectors.hosts_alive()
    if not hosts:
        raise ServiceUnavailable("沙箱服务不可用：没有在线的工作节点。The sandbox service is unavailable: no worker host is online.")
    live = dict(Session.objects.filter(state__in=Session.LIVE_STATES, host__in=[h["host"] for h in hosts])
                .values_list("host").annotate(n=Count("id")))
    free = [(h["capacity"] - max(h["live"], live.get(h["host"], 0)), h["host"]) for h in hosts]
    best = max(free)
    if best[0] <= 0:
        soonest = (Session.objects.filter(state=Session.State.READY, expires_at__isnull=False)
                   .order_by("expires_at").values_list("expires_at", flat=True).first())
        minutes = max(1, -(-int((soonest - timezone.now()).total_seconds()) // 60)) if soonest else 5
        raise ServiceUnavailable(f"实验室已满，请 {minutes} 分钟后再试。The lab is full, try again in {minutes} minutes.")
    return best[1]


def session_start(*, user: AbstractBaseUser, lab: Lab) -> tuple[Session, bool]:
    """The user's live session of the lab, or a new one being started; (session, created)."""
    existing = selectors.live_session_for_lab(user=user, lab=lab)
    if existing is not None:
        return existing, False
    if selectors.live_sessions(user=user).count() >= settings.LAB_USER_SESSION_LIMIT:
        raise Conflict(f"最多同时运行 {settings.LAB_USER_SESSION_LIMIT} 个沙箱。You may run at most "
                       f"{settings.LAB_USER_SESSION_LIMIT} sandboxes at once: stop one first.")
    host = _choose_host()
    lifetime = int((lab.limits or {}).get("lifetime_minutes", 120))
    with transaction.atomic():
        session = Session.objects.create(
            user=user, lab=lab, host=host, state=Session.State.STARTING,
            expires_at=timezone.now() + timedelta(minutes=lifetime),
        )
        transaction.on_commit(lambda: _send(session, "labs.tasks.sandbox_start", expires=START_EXPIRES))
    return session, True


def _send(session: Session, task: str, **options: object):
    from labsite.celery import app

    return app.send_task(task, args=[session.id], queue=f"host.{session.host}", **options)


def session_set_state(*, sid: str, state: str, message: str = "", only_from: tuple[str, ...] | None = None) -> bool:
    """Move a session to a state (optionally only from some states) and tell its viewers."""
    now = timezone.now()
    fields: dict = {"state": state, "message": message, "state_changed_at": now}
    if state == Session.State.READY:
        fields["ready_at"] = now
    if state in (Session.State.STOPPED, Session.State.FAILED, Session.State.LOST):
        fields["ended_at"] = now
    qs = Session.objects.filter(id=sid)
    if only_from:
        qs = qs.filter(state__in=only_from)
    changed = qs.update(**fields) > 0
    if changed:
        session_broadcast(sid=sid, event={"type": "state", "state": state, "message": message})
        from cohorts.services import dashboards_notify_safely  # never fails a state change

        dashboards_notify_safely(sid=sid)
    return changed


def session_stop(*, session: Session) -> None:
    """Ask the session's host to stop it; the state becomes stopped when it is gone."""
    if not session.is_live:
        return
    session_set_state(sid=session.id, state=Session.State.STOPPING)
    transaction.on_commit(lambda: _send(session, "labs.tasks.sandbox_stop", expires=300))


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a step's check."""

    passed: bool
    message: str


def _step(session: Session, step_key: str) -> Step:
    try:
        return session.lab.steps.get(key=step_key, retired=False)
    except Step.DoesNotExist:
        raise NotFound(f"lab {session.lab.slug!r} has no step {step_key!r}") from None


def session_check(*, session: Session, step_key: str, by: str = "check") -> CheckResult:
    """Run a step's check inside the session's sandbox and record the attempt."""
    step = _step(session, step_key)
    if not step.data.get("check"):
        raise BadRequest(f"step {step_key!r} has no check")
    if session.state != Session.State.READY:
        raise Conflict(f"the sandbox is {session.state}, not ready")
    timeout = float(step.data.get("check_timeout", 10))
    try:
        result = _send(session, "labs.tasks.sandbox_check", kwargs={"step_id": step.id}, expires=10).get(timeout=timeout + 15)
    except CeleryTimeout:
        raise ServiceUnavailable("沙箱主机没有及时响应。The sandbox host did not answer in time; try again.") from None
    outcome = CheckResult(passed=bool(result["passed"]), message=result["message"])
    progress_record_check(user=session.user, step=step, result=outcome, by=by)
    return outcome


def progress_record_check(*, user: AbstractBaseUser, step: Step, result: CheckResult, by: str) -> StepProgress:
    """Count a check attempt; the first pass marks the step passed."""
    with transaction.atomic():
        progress, _ = StepProgress.objects.select_for_update().get_or_create(user=user, step=step)
        progress.attempts += 1
        progress.last_message = result.message[:2000]
        first_pass = result.passed and progress.passed_at is None
        if first_pass:
            progress.passed_at = timezone.now()
            progress.passed_by = by
        progress.save()
        if first_pass:
            step_passed.send(sender=Step, user=user, step=step)
    from cohorts.services import dashboards_notify_safely  # never fails the trainee's check

    dashboards_notify_safely(user_id=user.id, step=step)
    return progress


def _text(t) -> dict:
    return {"zh-hans": t.zh_hans, "en": t.en}


def lab_import(*, spec, position: int = 0) -> tuple[Lab, bool]:
    """Create or update a lab from a loaded LabSpec; (lab, changed).

    Idempotent: an unchanged version does nothing. Steps are matched by id, so
    trainees' progress follows a step across edits; steps gone from the file are
    retired, not deleted, and their progress is kept.
    """
    from dataclasses import asdict

    existing = Lab.objects.filter(slug=spec.slug).first()
    if existing is not None and existing.version == spec.version:
        if existing.position != position:
            Lab.objects.filter(pk=existing.pk).update(position=position)
        return existing, False
    with transaction.atomic():
        lab, _ = Lab.objects.update_or_create(slug=spec.slug, defaults={
            "title": _text(spec.title), "summary": _text(spec.summary), "level": spec.level,
            "minutes": spec.minutes, "image": spec.image, "limits": asdict(spec.limits),
            "setup": spec.setup or "", "tags": list(spec.tags), "version": spec.version,
            "source": str(spec.path), "position": position,
        })
        keys = []
        for i, step in enumerate(spec.steps):
            keys.append(step.id)
            quiz = asdict(step.quiz) if step.quiz else None
            Step.objects.update_or_create(lab=lab, key=step.id, defaults={
                "position": i, "title": _text(step.title), "text": _text(step.text), "retired": False,
                "data": {
                    "check": step.check, "setup": step.setup, "solution": step.solution,
                    "hints": [_text(h.text) for h in step.hints], "auto_check": step.auto_check,
                    "quiz": quiz, "check_timeout": step.check_timeout,
                },
            })
        lab.steps.exclude(key__in=keys).update(retired=True, position=len(keys) + 1000)
    return lab, True


def session_verify_host(*, sid: str) -> str | None:
    """If a live session's host has stopped beating, mark the session failed or lost.

    Returns the new state, or None when nothing changed. This is what lets a page say
    "the sandbox service is unavailable" within seconds instead of spinning.
    """
    session = Session.objects.filter(id=sid).only("id", "host", "state").first()
    if session is None or not session.is_live:
        return None
    if session.host in {h["host"] for h in selectors.hosts_alive()}:
        return None
    if session.state == Session.State.STARTING:
        state, message = Session.State.FAILED, "沙箱服务不可用：工作节点已离线。The sandbox service is unavailable: its worker host went offline."
    else:
        state, message = Session.State.LOST, "沙箱已丢失：工作节点已离线。The sandbox was lost: its worker host went offline."
    return state if session_set_state(sid=sid, state=state, message=message, only_from=Session.LIVE_STATES) else None


def _login_keys(*, address: str, username: str) -> list[str]:
    import hashlib

    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:16]
    return [f"login-fail:{address}:{name}", f"login-fail:{address}"]


def login_blocked(*, address: str, username: str) -> bool:
    """Too many recent failures from this address (for this name, or overall)."""
    from django.core.cache import cache

    per_name, per_address = (cache.get(k, 0) for k in _login_keys(address=address, username=username))
    return per_name >= settings.LOGIN_MAX_FAILURES or per_address >= settings.LOGIN_MAX_FAILURES * 4


def login_failed(*, address: str, username: str) -> None:
    """Count a failed login; the window starts at the first failure."""
    from django.core.cache import cache

    for key in _login_keys(address=address, username=username):
        if not cache.add(key, 1, timeout=settings.LOGIN_WINDOW):
            cache.incr(key)


def login_succeeded(*, address: str, username: str) -> None:
    """A good password clears that name's failures from this address."""
    from django.core.cache import cache

    cache.delete(_login_keys(address=address, username=username)[0])


def session_reset(*, session: Session) -> None:
    """A fresh sandbox (new, empty upper layer) for the same session; progress is kept."""
    if session.state != Session.State.READY:
        raise Conflict(f"the sandbox is {session.state}, not ready")
    session_set_state(sid=session.id, state=Session.State.STARTING, message="重置中… Resetting…")
    transaction.on_commit(lambda: _send(session, "labs.tasks.sandbox_reset", expires=START_EXPIRES))


def lifetime_limits(lab: Lab) -> tuple[timedelta, timedelta]:
    """(lifetime of one block, the most a session may last with extensions)."""
    minutes = int((lab.limits or {}).get("lifetime_minutes", 120))
    return timedelta(minutes=minutes), timedelta(minutes=2 * minutes)


def session_extend(*, session: Session) -> Session:
    """Push the end of a ready session back by one lifetime block, within the lab's limit."""
    if session.state != Session.State.READY:
        raise Conflict(f"the sandbox is {session.state}, not ready")
    block, most = lifetime_limits(session.lab)
    latest = session.created_at + most
    new_end = min(timezone.now() + block, latest)
    if session.expires_at and new_end <= session.expires_at:
        raise Conflict("已达到本实验允许的最长时间。This lab's time limit is reached; it cannot be extended further.")
    session.expires_at = new_end
    session.save(update_fields=["expires_at"])
    session_broadcast(sid=session.id, event={"type": "expiry", "expires_at": new_end.isoformat()})
    return session


WARN_BEFORE = timedelta(minutes=5)


def sessions_reap(*, now=None) -> dict[str, int]:
    """Stop sandboxes past their lifetime or idle too long; warn those close to either;
    fail starts that no host took. Run by Celery beat."""
    now = now or timezone.now()
    activity: dict[str, float] = {}
    for beat in selectors.hosts_alive():
        activity.update(beat.get("activity") or {})
    counts = {"expired": 0, "idle": 0, "warned": 0, "stale": 0}
    for session in Session.objects.filter(state=Session.State.READY).select_related("lab"):
        idle_limit = timedelta(minutes=int((session.lab.limits or {}).get("idle_minutes", 30)))
        last = activity.get(session.id)
        last_seen = datetime.fromtimestamp(last, tz=dt_timezone.utc) if last else (session.ready_at or now)
        # The sooner of the two ends: its lifetime, or the idle limit since the last keystroke.
        ends = [("idle", last_seen + idle_limit)]
        if session.expires_at:
            ends.append(("lifetime", session.expires_at))
        reason, end = min(ends, key=lambda e: e[1])
        if end <= now:
            message = ("已到时间。The session's time is up." if reason == "lifetime" else
                       f"闲置超过 {idle_limit.seconds // 60} 分钟。Stopped after {idle_limit.seconds // 60} idle minutes.")
            session_set_state(sid=session.id, state=Session.State.STOPPING, message=message)
            _send(session, "labs.tasks.sandbox_stop", expires=300)
            counts["expired" if reason == "lifetime" else "idle"] += 1
        elif end - now <= WARN_BEFORE:
            session_broadcast(sid=session.id, event={"type": "warning", "reason": reason, "ends_at": end.isoformat()})
            counts["warned"] += 1
    stale = Session.objects.filter(state=Session.State.STARTING,
                                   state_changed_at__lt=now - timedelta(seconds=settings.LAB_START_TIMEOUT))
    for sid in stale.values_list("id", flat=True):
        counts["stale"] += session_verify_start(sid=sid, now=now) is not None
    return counts


def session_verify_start(*, sid: str, now=None) -> str | None:
    """A start (or reset) no host finished within LAB_START_TIMEOUT ends as failed, with
    a message the trainee can act on; its host is asked to clean up whatever it made.
    Returns the new state, or None when the start is not overdue."""
    now = now or timezone.now()
    limit = settings.LAB_START_TIMEOUT
    session = Session.objects.filter(id=sid, state=Session.State.STARTING,
                                     state_changed_at__lt=now - timedelta(seconds=limit)).first()
    if session is None:
        return None
    message = (f"沙箱没有在 {limit} 秒内启动：工作节点没有响应。请再点一次“开始”。"
               f"The sandbox did not start within {limit} s: no worker host took it. Press Start to try again.")
    if not session_set_state(sid=sid, state=Session.State.FAILED, message=message, only_from=(Session.State.STARTING,)):
        return None
    _send(session, "labs.tasks.sandbox_stop", expires=3600)  # whatever it made, once its host is back
    return Session.State.FAILED


def recording_save(*, sid: str) -> None:
    """Move a finished session's recording from its host's disk into the database."""
    from labs.models import Recording
    from sandbox.config import host_config
    from sandbox.relay.recording import recording_take

    cast = recording_take(host_config().data_dir, sid)
    if cast and Session.objects.filter(id=sid).exists():
        Recording.objects.update_or_create(session_id=sid, defaults={"cast": cast})
