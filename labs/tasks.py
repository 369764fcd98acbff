"""Short Celery tasks, routed to the worker host that owns the sandbox.

None lives as long as a session: they provision, check and tear down, keyed by the
session id and idempotent, so a redelivered task does no harm.
"""
from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.utils.translation import gettext as _

from labs.hostconfig import host_config
from labs.inside.services import checkpoints_collect, session_image
from labs.inside.transfer import image_fetch_here
from labs.learning import AUTO_CHECK_SECONDS, autocheck_run, session_follow, step_check, step_setup_run
from labs.models import Session, new_session_id
from labs.redis import sync_redis
from labs.selectors import host_draining, hosts_alive
from labs.services import recording_save, recordings_expire, reset_mark, session_set_state, sessions_reap, terminal_mark
from labs.upload_jobs import upload_import
from sandbox.inside.rewind import rewind_cleanup, sandbox_rewind as engine_rewind
from sandbox.pool import flavour, pool_fill_one, pool_forget, pool_members, pool_take, pool_target, pool_trim
from sandbox.runtime import Limits, runc_list
from sandbox.service import SandboxRequest, host_sweep, sandbox_exec, sandbox_start as engine_start, sandbox_stop as engine_stop

log = logging.getLogger(__name__)
S = Session.State


@shared_task(name="labs.tasks.sandbox_start", soft_time_limit=60, time_limit=90)
def sandbox_start(sid: str, cols: int = 80, rows: int = 24, image: str | None = None, volumes_from: str = "") -> None:
    """Provision the sandbox of a starting session, its terminal cols x rows (on `image`:
    a checkpoint to rewind to, with the trainee's volumes from `volumes_from`)."""
    _provision(sid, cols=cols, rows=rows, image=image, volumes_from=volumes_from)


def _provision(sid: str, *, cols: int = 80, rows: int = 24, image: str | None = None, volumes_from: str = "",
               rewind: bool = False) -> None:
    """Start (or, with rewind, restart in place) the sandbox of a starting session."""
    session = Session.objects.select_related("lab").filter(id=sid).first()
    if session is None or session.state != S.STARTING:
        return  # stopped meanwhile, or a redelivered task
    cfg = host_config()
    own = None if image else session_image(sid=sid)
    image = image or own
    req = SandboxRequest(sid=sid, image=image or session.lab.image, hostname=sandbox_hostname(sid),
                         limits=Limits.from_lab(session.lab.limits), cols=cols, rows=rows, volumes_from=volumes_from)
    try:
        if own:
            image_fetch_here(ref=own)  # made on another host: its blobs come from there
        if rewind:
            engine_rewind(cfg, req)
        # The web may have given this session a warm-pool sandbox's id (sandbox/pool.py):
        # take it over; anything else (none, another image, a dead one) is started afresh.
        elif not (not volumes_from and pool_take(cfg, sid, flavour_json=flavour(req.image, req.limits),
                                                  cols=cols, rows=rows)):
            engine_start(cfg, req)
    except Exception as exc:
        log.error("session %s failed to start on %s: %s", sid, cfg.host, exc, exc_info=True)
        session_set_state(sid=sid, state=S.FAILED, message=str(exc))
        return
    if session.lab.setup and image is None:  # a checkpoint or own image holds what setup made
        sandbox_exec(cfg, sid, session.lab.setup, timeout=60)
    if not session_set_state(sid=sid, state=S.READY, only_from=(S.STARTING,)):
        engine_stop(cfg, sid)  # stopped while it was starting
        return
    if rewind:
        rewind_cleanup(cfg, sid)  # the old container layer, after the prompt
    session.refresh_from_db()
    session_follow(session=session)  # the current step's setup, and its auto-check
    pool_refill_soon(cfg.host)


def sandbox_hostname(sid: str) -> str:
    """The sandbox's hostname: the same for a fresh start and a warm-pool sandbox."""
    return f"lab-{sid[:8]}"


@shared_task(name="labs.tasks.sandbox_check", soft_time_limit=120, time_limit=150)
def sandbox_check(sid: str, step_id: int, lang: str | None = None) -> dict:
    """A pressed Check, on the sandbox's host: run, record, tell the page (labs.learning.step_check)."""
    return step_check(sid=sid, step_id=step_id, lang=lang)


@shared_task(name="labs.learning.auto_check", soft_time_limit=60, time_limit=90)
def auto_check(sid: str, interval: float = AUTO_CHECK_SECONDS) -> str:
    """Poll a session's current auto-check step (self-rescheduling while it is unpassed)."""
    return autocheck_run(sid=sid, interval=interval)


@shared_task(name="labs.learning.step_setup", soft_time_limit=90, time_limit=120)
def step_setup(sid: str, step_id: int) -> int:
    """A step's setup script, run inside the sandbox as the step begins; returns its exit code."""
    return step_setup_run(sid=sid, step_id=step_id)


@shared_task(name="labs.tasks.sandbox_stop", soft_time_limit=60, time_limit=90)
def sandbox_stop(sid: str) -> None:
    """Tear a sandbox down completely and mark the session stopped."""
    engine_stop(host_config(), sid)
    recording_save(sid=sid)
    checkpoints_collect(sid=sid)
    # Keep the reason set when stopping began ("time is up", "idle"…).
    reason = Session.objects.filter(id=sid).values_list("message", flat=True).first() or ""
    session_set_state(sid=sid, state=S.STOPPED, message=reason, only_from=(S.STARTING, S.READY, S.STOPPING))


@shared_task(name="labs.tasks.sandbox_exited", soft_time_limit=60, time_limit=90)
def sandbox_exited(sid: str) -> None:
    """The sandbox's shell ended (the trainee typed exit): clean up, mark it stopped."""
    engine_stop(host_config(), sid)
    recording_save(sid=sid)
    checkpoints_collect(sid=sid)
    session_set_state(sid=sid, state=S.STOPPED, message=_("The shell exited."),
                      only_from=(S.STARTING, S.READY, S.STOPPING), reason="exited")


def host_resume(*, host: str, held: set[str]) -> set[str]:
    """Of the sandboxes whose terminals the host's holder kept, those a new relay should
    carry on: still running, and their session still live."""
    running = {c["id"] for c in runc_list(host_config()) if c.get("status") == "running"}
    live = set(Session.objects.filter(host=host, id__in=held & running, state__in=(S.READY, S.STOPPING))
               .values_list("id", flat=True))
    return held & running & live


def host_reconcile(*, host: str, keep: set[str], shutdown: bool = False) -> list[str]:
    """Make this host's disk, runc and database agree: what is not kept is removed, its
    session lost. Sessions still starting are left to their start task (or the start
    timeout), unless the host is shutting down, when every session ends."""
    starting = set() if shutdown else set(Session.objects.filter(host=host, state=S.STARTING).values_list("id", flat=True))
    removed = host_sweep(host_config(), keep=keep | starting)
    for sid in removed:
        recording_save(sid=sid)
        checkpoints_collect(sid=sid)
    pool_forget(sync_redis(), host=host)  # its warm-pool sandboxes were swept with the rest
    if shutdown:
        ended = Session.objects.filter(host=host, state__in=Session.LIVE_STATES).exclude(id__in=keep)
        message = _("The sandbox was lost: its worker host was shut down.")
    else:
        ended = Session.objects.filter(host=host, state__in=(S.READY, S.STOPPING)).exclude(id__in=keep)
        message = _("The sandbox was lost: its worker host restarted.")
    for sid in list(ended.values_list("id", flat=True)):
        session_set_state(sid=sid, state=S.LOST, message=message, reason="lost")
    return removed


@shared_task(name="labs.tasks.reap_sessions")
def reap_sessions() -> dict[str, int]:
    """Periodic (beat): lifetimes, idle timeouts, warnings, starts nobody took."""
    for beat in hosts_alive():  # the pool's size follows demand down as well as up
        pool_refill_soon(beat["host"])
    return sessions_reap()


def pool_refill_soon(host: str, *, countdown: float = 0) -> None:
    """Have the host bring its warm pool to size, behind the tasks already queued there."""
    if settings.LAB_POOL > 0:
        from celery import current_app as app

        app.send_task("labs.tasks.pool_refill", queue=f"host.{host}", expires=60, countdown=countdown or None)


@shared_task(name="labs.tasks.pool_refill", soft_time_limit=60, time_limit=90)
def pool_refill() -> dict:
    """Bring this host's warm pool to its target (sandbox/pool.py): trim what is too many
    or stale, start at most one sandbox, and queue itself again if more are wanted, so
    trainees' starts queued meanwhile go first."""
    cfg = host_config()
    if settings.LAB_POOL <= 0 and not pool_members(cfg):
        return {"size": 0}  # off, and nothing left from when it was on: nothing to do
    r = sync_redis()
    lock = f"lab:pool:{cfg.host}:lock"
    again = f"lab:pool:{cfg.host}:again"
    if not r.set(lock, 1, nx=True, ex=90):
        r.set(again, 1, ex=90)  # another run is at it: it goes round once more when done
        return {"busy": True}
    more = failed = False
    made, ready, stopped, size = "", 0, [], 0
    try:
        spec, size = pool_target(r, host=cfg.host, window_minutes=settings.LAB_POOL_WINDOW,
                                 floor=settings.LAB_POOL_MIN, most=settings.LAB_POOL)
        sessions = Session.objects.filter(host=cfg.host, state__in=Session.LIVE_STATES).count()
        # At most half the places trainees leave free: the pool never fills a host.
        size = 0 if host_draining(host=cfg.host) else min(size, max(0, cfg.capacity - sessions) // 2)
        ready, stopped = pool_trim(cfg, r, flavour_json=spec, size=size,
                                   is_session=lambda sid: Session.objects.filter(id=sid).exists())
        if spec and ready < size:
            made = pool_fill_one(cfg, r, flavour_json=spec, new_id=new_session_id, hostname=sandbox_hostname)
            more = ready + 1 < size
    except Exception as exc:  # e.g. runc list racing a delete: try again shortly, the chain must not end
        log.warning("warm pool of %s: %s; trying again", cfg.host, exc)
        more = failed = True
    finally:
        r.delete(lock)
    if r.delete(again):  # asked for while this run held the lock (a drain, a start): look again
        more = True
    if more:
        pool_refill_soon(cfg.host, countdown=5 if failed else 0)
    return {"size": size, "ready": ready + bool(made), "stopped": len(stopped)}


@shared_task(name="labs.tasks.expire_recordings")
def expire_recordings() -> int:
    """Periodic (beat): recordings past their retention period are deleted."""
    return recordings_expire()


@shared_task(name="labs.tasks.sandbox_reset", soft_time_limit=60, time_limit=90)
def sandbox_reset(sid: str, lang: str = "") -> None:
    """Same session, fresh sandbox: a new empty upper layer; progress is untouched. The
    terminal shows a marker line (in the trainee's language) where the new one begins."""
    session = Session.objects.select_related("lab").filter(id=sid).first()
    if session is None or session.state != S.STARTING:
        return
    cfg = host_config()
    engine_stop(cfg, sid)
    terminal_mark(sid=sid, text=reset_mark(lang))  # after the old shell's last byte
    sandbox_start(sid)


@shared_task(name="labs.tasks.sandbox_rewind", soft_time_limit=60, time_limit=90)
def sandbox_rewind(sid: str, ref: str) -> None:
    """Same session, its sandbox restarted on a checkpoint (`ref`): the checkpoint's
    layers stacked under a fresh upper; progress is untouched. The trainee's home and
    /tmp are volumes: they stay as they are, as a restarted Docker container keeps its
    volumes (only the container layer goes back to the checkpoint)."""
    _provision(sid, image=ref, rewind=True)


@shared_task(name="labs.tasks.lab_upload_import", soft_time_limit=90, time_limit=120)
def lab_upload_import(upload_id: str) -> str:
    """Import an uploaded lab archive, within its time limit (labs.upload_jobs)."""
    return upload_import(upload_id=upload_id)
