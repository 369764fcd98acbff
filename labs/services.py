"""Writes: starting, checking and stopping sandbox sessions; progress.

The web never touches a sandbox itself: it records intent in the database and sends
a short Celery task to the worker host that owns (or will own) the sandbox.
"""
from __future__ import annotations

import logging
import time
from datetime import timedelta

from asgiref.sync import async_to_sync
from celery.exceptions import TimeoutError as CeleryTimeout
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from labs import events, selectors
from labs.checks import check_lock_key
from labs.exceptions import BadRequest, Conflict, ServiceUnavailable
from labs.hostconfig import host_config
from labs.models import Lab, Session, Step
from labs.progress import CheckResult, step_of
from labs.redis import sync_redis
from labs.i18n import say

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


def _choose_host(*, pool_flavour: str = "") -> str:
    """The live host, not drained, with the most free places; counts come from the
    database, which knows about sessions still starting (heartbeats lag by a second or
    two), and from the heartbeat's warm-pool sandboxes, which hold places too (a ready
    one of `pool_flavour` is a place this start takes without adding a sandbox)."""
    from django.db.models import Count

    from sandbox.pool import pool_claimable

    hosts = selectors.hosts_alive()
    # Hosts are (re)starting (`./lab up` a moment ago, a relay handing over): wait for
    # one rather than turn the trainee away at once.
    deadline = time.monotonic() + settings.LAB_HOST_WAIT
    while not hosts and time.monotonic() < deadline:
        time.sleep(0.25)
        hosts = selectors.hosts_alive()
    if not hosts:
        raise ServiceUnavailable(_("The sandbox service is unavailable: no worker host is online."))
    drained = selectors.hosts_draining()
    hosts = [h for h in hosts if h["host"] not in drained]
    names = [h["host"] for h in hosts]
    live = dict(Session.objects.filter(state__in=Session.LIVE_STATES, host__in=names)
                .values_list("host").annotate(n=Count("id")))
    ready = pool_claimable(sync_redis(), hosts=names, flavour_json=pool_flavour) if pool_flavour else {}
    free = [(h["capacity"] - max(h["live"], live.get(h["host"], 0) + h.get("pooled", 0)) + ready.get(h["host"], 0),
             h["host"]) for h in hosts]
    best = max(free, default=(0, ""))
    if best[0] <= 0:
        soonest = (Session.objects.filter(state=Session.State.READY, expires_at__isnull=False)
                   .order_by("expires_at").values_list("expires_at", flat=True).first())
        minutes = max(1, -(-int((soonest - timezone.now()).total_seconds()) // 60)) if soonest else 5
        raise ServiceUnavailable(_("The lab is full, try again in %(minutes)d minutes.") % {"minutes": minutes})
    return best[1]


def session_start(*, user: AbstractBaseUser, lab: Lab, cols: int = 80, rows: int = 24) -> tuple[Session, bool]:
    """The user's live session of the lab, or a new one being started with a terminal
    of cols x rows (the page's); (session, created)."""
    with transaction.atomic():
        # One start at a time per user, so a double click (or two tabs) cannot make two
        # sessions nor pass the limit: PostgreSQL locks the user's row until commit;
        # SQLite's IMMEDIATE transactions already hold the write lock from BEGIN.
        get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).first()
        existing = selectors.live_session_for_lab(user=user, lab=lab)
        if existing is not None:
            return existing, False
        if selectors.live_sessions(user=user).count() >= settings.LAB_USER_SESSION_LIMIT:
            raise Conflict(_("You may run at most %(n)d sandboxes at once: stop one first.") % {"n": settings.LAB_USER_SESSION_LIMIT})
        pool_flavour = _pool_flavour(lab) if settings.LAB_POOL > 0 else ""
        host = _choose_host(pool_flavour=pool_flavour)
        # With the warm pool on, the session takes a ready sandbox's id (sandbox/pool.py),
        # and the start task on the host assigns that sandbox instead of making one.
        sid = _pool_claim(host, pool_flavour) if pool_flavour else None
        lifetime = int((lab.limits or {}).get("lifetime_minutes", 120))
        session = Session.objects.create(
            **({"id": sid} if sid else {}), user=user, lab=lab, host=host, state=Session.State.STARTING,
            expires_at=timezone.now() + timedelta(minutes=lifetime),
        )
        transaction.on_commit(lambda: _send(session, "labs.tasks.sandbox_start", expires=START_EXPIRES,
                                            kwargs={"cols": cols, "rows": rows}))
    return session, True


def host_drain(*, host: str, drained: bool = True) -> None:
    """Drain a worker host (no new sandboxes there, its sessions run to their end), or
    let it take new ones again. Its warm pool empties while it is drained."""
    if drained:
        sync_redis().sadd(selectors.DRAINED, host)
    else:
        sync_redis().srem(selectors.DRAINED, host)
    if settings.LAB_POOL > 0:
        from celery import current_app as app

        app.send_task("labs.tasks.pool_refill", queue=f"host.{host}", expires=60)  # empties its pool now


def _pool_flavour(lab: Lab) -> str:
    """What a sandbox of this lab is made of, as the warm pool names it."""
    from sandbox.pool import flavour
    from sandbox.runtime import Limits

    return flavour(lab.image, Limits.from_lab(lab.limits or {}))


def _pool_claim(host: str, pool_flavour: str) -> str | None:
    """Count this start as demand and take a ready pool sandbox's id, if the host has one;
    Redis being away only means a fresh start."""
    from sandbox.pool import pool_claim, pool_note_start

    try:
        r = sync_redis()
        pool_note_start(r, host=host, flavour_json=pool_flavour, window_minutes=settings.LAB_POOL_WINDOW)
        return pool_claim(r, host=host, flavour_json=pool_flavour)
    except Exception:
        log.warning("warm pool of %s unavailable: a fresh start", host, exc_info=True)
        return None


def _send(session: Session, task: str, *, queue: str = "", **options: object):
    """Send a task to the session's host: host.<name>, or host.<name>.<queue> (checks)."""
    from celery import current_app as app

    name = f"host.{session.host}" + (f".{queue}" if queue else "")
    return app.send_task(task, args=[session.id], queue=name, **options)


def session_set_state(*, sid: str, state: str, message: str = "", only_from: tuple[str, ...] | None = None,
                      reason: str = "", who: str = "") -> bool:
    """Move a session to a state (optionally only from some states) and tell its viewers.

    `reason` is a code the page words in the trainee's language (docs/protocol.md):
    instructor, idle, lifetime, lost, exited, reset."""
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
    if changed and state in (Session.State.STOPPED, Session.State.FAILED, Session.State.LOST):
        session_streams_end(sid=sid)
    if changed:
        event = {"type": "state", "state": state, "message": message}
        if reason:
            event["reason"] = reason
        if who:
            event["who"] = who  # the instructor or admin who did it, named on the trainee's page
        session_broadcast(sid=sid, event=event)
        events.session_changed(sid=sid)  # cohort dashboards, after commit, off this path
    return changed


def session_streams_end(*, sid: str) -> None:
    """An ended session's terminal takes no more input, and its output expires."""
    from sandbox.relay import streams
    from sandbox.relay.tabs import tab_keys, tabs_key

    try:
        with sync_redis().pipeline(transaction=False) as p:
            p.delete(streams.in_key(sid))
            p.expire(streams.out_key(sid), streams.ENDED_TTL)
            for tab_in, tab_out in tab_keys(sid):  # its tabs end with it (sandbox/relay/tabs.py)
                p.delete(tab_in)
                p.expire(tab_out, streams.ENDED_TTL)
            p.delete(tabs_key(sid))
            p.execute()
    except Exception:  # Redis away: the relay's own expiry and MAXLEN still bound them
        log.warning("could not end the streams of session %s", sid, exc_info=True)


def session_stop(*, session: Session, by: str = "trainee", message: str = "", who: str = "") -> None:
    """Ask the session's host to stop it; the state becomes stopped when it is gone.
    `by` is who asked: "trainee", or "instructor" (the trainee's page then says so, in
    the trainee's language); `message` (why, and who did it) stays with the session."""
    if not session.is_live:
        return
    session_set_state(sid=session.id, state=Session.State.STOPPING, message=message,
                      reason="instructor" if by == "instructor" else "", who=who)
    transaction.on_commit(lambda: _send(session, "labs.tasks.sandbox_stop", expires=300))


def session_lang_remember(*, sid: str, lang: str) -> None:
    """The trainee's language for this session's checks, auto-checks included (a day, in Redis)."""
    sync_redis().set(f"lab:lang:{sid}", lang, ex=86400)


def session_lang(*, sid: str) -> str | None:
    """The language last remembered for this session, if any."""
    value = sync_redis().get(f"lab:lang:{sid}")
    return value.decode() if value else None


def session_check(*, session: Session, step_key: str, lang: str | None = None, wait: bool = False) -> CheckResult | None:
    """Run a step's check inside the session's sandbox, in the trainee's language. The
    session's host runs it, records the attempt and sends the result to the session's
    pages over their WebSocket (a "check" event, as auto-checks do): nothing waits here.
    `wait`: also wait for the result and return it (scripts and tests: `?wait=1`)."""
    step = step_of(lab=session.lab, key=step_key)
    if not step.data.get("check"):
        raise BadRequest(f"step {step_key!r} has no check")
    if session.state != Session.State.READY:
        raise Conflict(f"the sandbox is {session.state}, not ready")
    if sync_redis().exists(check_lock_key(session.id)):
        raise Conflict(say("上一次检查还在运行，请稍后再试。", "The previous check of this sandbox is still running; try again when it ends."))
    # Checks have their own queue: a slow check never delays a start or a stop.
    sent = _send(session, "labs.tasks.sandbox_check", queue="checks", kwargs={"step_id": step.id, "lang": lang},
                 expires=10)
    if not wait:
        return None
    try:
        result = sent.get(timeout=float(step.data.get("check_timeout", 10)) + 15)
    except CeleryTimeout:
        raise ServiceUnavailable(_("The sandbox host did not answer in time; try again.")) from None
    return CheckResult(passed=bool(result["passed"]), message=result["message"])


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
        if existing.position != position or existing.prerequisites != list(spec.prerequisites):
            Lab.objects.filter(pk=existing.pk).update(position=position, prerequisites=list(spec.prerequisites))
        return existing, False
    with transaction.atomic():
        lab, _ = Lab.objects.update_or_create(slug=spec.slug, defaults={
            "title": _text(spec.title), "summary": _text(spec.summary), "level": spec.level,
            "minutes": spec.minutes, "image": spec.image, "limits": asdict(spec.limits),
            "setup": spec.setup or "", "tags": list(spec.tags), "version": spec.version,
            "prerequisites": list(spec.prerequisites),
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
                    "wrong": [{"script": w.script, "why": _text(w.why)} for w in step.wrong],
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
    if session.state != Session.State.STARTING and selectors.host_holds(host=session.host):
        return None  # its relay is being restarted; the sandbox itself is alive
    if session.state == Session.State.STARTING:
        state, message = Session.State.FAILED, _("The sandbox service is unavailable: its worker host went offline.")
    else:
        state, message = Session.State.LOST, _("The sandbox was lost: its worker host went offline.")
    return state if session_set_state(sid=sid, state=state, message=message, only_from=Session.LIVE_STATES,
                                      reason="lost") else None


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


def session_reset(*, session: Session, lang: str = "") -> None:
    """A fresh sandbox (new, empty upper layer) for the same session; progress is kept.
    The terminal gets a marker line (in `lang`) where the fresh sandbox begins."""
    if session.state != Session.State.READY:
        raise Conflict(f"the sandbox is {session.state}, not ready")
    session_set_state(sid=session.id, state=Session.State.STARTING, message=_("Resetting…"), reason="reset")
    transaction.on_commit(lambda: _send(session, "labs.tasks.sandbox_reset", expires=START_EXPIRES,
                                        kwargs={"lang": lang}))


def lifetime_limits(lab: Lab) -> tuple[timedelta, timedelta]:
    """(lifetime of one block, the most a session may last with extensions)."""
    minutes = int((lab.limits or {}).get("lifetime_minutes", 120))
    return timedelta(minutes=minutes), timedelta(minutes=2 * minutes)


def session_extend(*, session: Session, message: str = "") -> Session:
    """Push the end of a ready session back by one lifetime block, within the lab's limit;
    `message` (who did it) is shown on the trainee's page."""
    if session.state != Session.State.READY:
        raise Conflict(f"the sandbox is {session.state}, not ready")
    block, most = lifetime_limits(session.lab)
    latest = session.created_at + most
    now = timezone.now()
    # One more block after the current end (not after now: pressing Extend early must
    # not shorten what is left), never past the lab's cap.
    new_end = min(max(session.expires_at or now, now) + block, latest)
    if session.expires_at and new_end <= session.expires_at:
        raise Conflict(_("This lab's time limit is reached; it cannot be extended further."))
    session.expires_at = new_end
    session.save(update_fields=["expires_at"])
    # Pressing Extend is activity: the idle clock starts again as after a keystroke.
    sync_redis().set(selectors.extended_key(session.id), repr(now.timestamp()),
                     ex=(selectors.idle_minutes(session.lab) + 5) * 60)
    idle_end = selectors.session_idle_end(session, activity=selectors.session_activity(), extended=now.timestamp())
    reason, end = selectors.session_end(session, idle_end=idle_end)
    session_broadcast(sid=session.id, event={"type": "expiry", "expires_at": new_end.isoformat(),
                                             "idle_ends_at": idle_end.isoformat(),
                                             "ends_at": end.isoformat(), "ends_because": reason,
                                             **({"message": message} if message else {})})
    return session


WARN_BEFORE = timedelta(minutes=5)


def sessions_reap(*, now=None) -> dict[str, int]:
    """Stop sandboxes past their lifetime or idle too long; warn those close to either;
    fail starts that no host took. Run by Celery beat."""
    now = now or timezone.now()
    activity = selectors.session_activity()
    counts = {"expired": 0, "idle": 0, "warned": 0, "stale": 0}
    ready = list(Session.objects.filter(state=Session.State.READY).select_related("lab"))
    stamps = sync_redis().mget([selectors.extended_key(s.id) for s in ready]) if ready else []
    for session, extended in zip(ready, stamps):
        idle_limit = timedelta(minutes=selectors.idle_minutes(session.lab))
        # The sooner of the two ends: its lifetime, or the idle limit since the last
        # keystroke (or Extend) — what the page's countdown shows (selectors.session_view).
        idle_end = selectors.session_idle_end(session, activity=activity, extended=float(extended) if extended else None)
        reason, end = selectors.session_end(session, idle_end=idle_end)
        if end <= now:
            message = (_("The session's time is up.") if reason == "lifetime" else
                       _("Stopped after %(minutes)d idle minutes.") % {"minutes": idle_limit.seconds // 60})
            session_set_state(sid=session.id, state=Session.State.STOPPING, message=message, reason=reason)
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
    message = _("The sandbox did not start within %(limit)d s: no worker host took it. Press Start to try again.") % {"limit": limit}
    if not session_set_state(sid=sid, state=Session.State.FAILED, message=message, only_from=(Session.State.STARTING,)):
        return None
    _send(session, "labs.tasks.sandbox_stop", expires=3600)  # whatever it made, once its host is back
    return Session.State.FAILED


def recordings_expire(*, now=None) -> int:
    """Delete recordings older than LAB_RECORDING_DAYS; returns how many."""
    from labs.models import Recording

    cutoff = (now or timezone.now()) - timedelta(days=settings.LAB_RECORDING_DAYS)
    deleted, _ = Recording.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def recording_save(*, sid: str) -> None:
    """Move a finished session's recording from its host's disk into the database."""
    from labs.models import Recording
    from sandbox.relay.recording import recording_take

    cast = recording_take(host_config().data_dir, sid)
    if cast and Session.objects.filter(id=sid).exists():
        Recording.objects.update_or_create(session_id=sid, defaults={"cast": cast})


def reset_mark(lang: str) -> str:
    """The line the terminal shows where a reset sandbox begins, in the trainee's language."""
    from django.utils import translation
    from django.utils.translation import gettext

    with translation.override(lang or settings.LANGUAGE_CODE):
        return gettext("Reset at %(time)s UTC: a fresh sandbox begins below; your files above are gone, "
                       "your progress is kept.") % {"time": timezone.now().strftime("%H:%M:%S")}


def terminal_mark(*, sid: str, text: str) -> None:
    """Write a highlighted line into the session's terminal output, where it stays for
    replays and reloads (the relay trims the stream, ids keep increasing)."""
    from sandbox.relay import streams

    line = f"\r\n\x1b[0;7m ↻ {text} \x1b[0m\r\n".encode()
    sync_redis().xadd(streams.out_key(sid), {"d": line})
