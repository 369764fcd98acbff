"""Short Celery tasks, routed to the worker host that owns the sandbox.

None lives as long as a session: they provision, check and tear down, keyed by the
session id and idempotent, so a redelivered task does no harm.
"""
from __future__ import annotations

import logging

from celery import shared_task
from django.utils.translation import gettext as _

from labs.models import Session, Step
from labs.services import recording_save, reset_mark, session_set_state, terminal_mark
from sandbox.config import host_config
from sandbox.exceptions import CheckTimeout, SandboxError
from sandbox.runtime import Limits
from sandbox.service import SandboxRequest, host_sweep, sandbox_exec, sandbox_start as engine_start, sandbox_stop as engine_stop

log = logging.getLogger(__name__)
S = Session.State


@shared_task(name="labs.tasks.sandbox_start", soft_time_limit=60, time_limit=90)
def sandbox_start(sid: str, cols: int = 80, rows: int = 24) -> None:
    """Provision the sandbox of a starting session, its terminal cols x rows."""
    session = Session.objects.select_related("lab").filter(id=sid).first()
    if session is None or session.state != S.STARTING:
        return  # stopped meanwhile, or a redelivered task
    cfg = host_config()
    req = SandboxRequest(sid=sid, image=session.lab.image, hostname=f"lab-{sid[:8]}", limits=Limits.from_lab(session.lab.limits), cols=cols, rows=rows)
    try:
        engine_start(cfg, req)
    except Exception as exc:
        log.error("session %s failed to start on %s: %s", sid, cfg.host, exc)
        session_set_state(sid=sid, state=S.FAILED, message=str(exc))
        return
    if session.lab.setup:
        sandbox_exec(cfg, sid, session.lab.setup, timeout=60)
    if not session_set_state(sid=sid, state=S.READY, only_from=(S.STARTING,)):
        engine_stop(cfg, sid)  # stopped while it was starting
        return
    from labs.learning import session_follow

    session.refresh_from_db()
    session_follow(session=session)  # the current step's setup, and its auto-check


@shared_task(name="labs.tasks.sandbox_check", soft_time_limit=120, time_limit=150)
def sandbox_check(sid: str, step_id: int) -> dict:
    """Run a step's check script inside the sandbox: exit 0 passes, output is the message."""
    step = Step.objects.get(id=step_id)
    timeout = float(step.data.get("check_timeout", 10))
    try:
        res = sandbox_exec(host_config(), sid, step.data["check"], timeout=timeout)
    except CheckTimeout as exc:
        return {"passed": False, "message": f"检查超时。{exc}"}
    except SandboxError as exc:
        return {"passed": False, "message": f"检查无法运行。The check could not run: {exc}"}
    return {"passed": res.exit_code == 0, "message": res.output.strip()}


@shared_task(name="labs.tasks.sandbox_stop", soft_time_limit=60, time_limit=90)
def sandbox_stop(sid: str) -> None:
    """Tear a sandbox down completely and mark the session stopped."""
    engine_stop(host_config(), sid)
    recording_save(sid=sid)
    # Keep the reason set when stopping began ("time is up", "idle"…).
    reason = Session.objects.filter(id=sid).values_list("message", flat=True).first() or ""
    session_set_state(sid=sid, state=S.STOPPED, message=reason, only_from=(S.STARTING, S.READY, S.STOPPING))


@shared_task(name="labs.tasks.sandbox_exited", soft_time_limit=60, time_limit=90)
def sandbox_exited(sid: str) -> None:
    """The sandbox's shell ended (the trainee typed exit): clean up, mark it stopped."""
    engine_stop(host_config(), sid)
    recording_save(sid=sid)
    session_set_state(sid=sid, state=S.STOPPED, message=_("The shell exited."),
                      only_from=(S.STARTING, S.READY, S.STOPPING), reason="exited")


def host_reconcile(*, host: str, keep: set[str]) -> list[str]:
    """Make this host's disk, runc and database agree: what is not kept is removed or lost."""
    removed = host_sweep(host_config(), keep=keep)
    for sid in removed:
        recording_save(sid=sid)
    lost = Session.objects.filter(host=host, state__in=Session.LIVE_STATES).exclude(id__in=keep)
    for sid in list(lost.values_list("id", flat=True)):
        session_set_state(sid=sid, state=S.LOST, message=_("The sandbox was lost: its worker host restarted."),
                          reason="lost")
    return removed


@shared_task(name="labs.tasks.reap_sessions")
def reap_sessions() -> dict[str, int]:
    """Periodic (beat): lifetimes, idle timeouts, warnings, starts nobody took."""
    from labs.services import sessions_reap

    return sessions_reap()


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
