"""Counting the sandbox events where they happen: Celery's task signals in the worker.

labs never imports this app; these receivers read the outcome of labs' own tasks
(the session row, the check's result, the reaper's counts) after each one ran.
Counting never fails a task: a Redis error is logged and the event is not counted.
"""
from __future__ import annotations

import logging
import time

from celery.signals import task_failure, task_postrun, task_prerun

from labsite.logs import log_context_reset, log_context_set
from monitoring import counters

log = logging.getLogger(__name__)

START, CHECK, STOP, EXITED, REAP = ("labs.tasks.sandbox_start", "labs.tasks.sandbox_check",
                                    "labs.tasks.sandbox_stop", "labs.tasks.sandbox_exited", "labs.tasks.reap_sessions")
WATCHED = {START, CHECK, STOP, EXITED, REAP}
_started: dict[str, float] = {}  # task id -> monotonic start, within this worker process


def _redis():
    from labs.redis import sync_redis

    return sync_redis()


def _host() -> str:
    from django.conf import settings

    return settings.LAB_HOST_NAME


def on_prerun_log_context(task_id: str, task, args=(), kwargs=None, **extra) -> None:
    """Every log line of a task names the task, and for a sandbox task its session,
    trainee, lab and step (docs/operations.md "Logs")."""
    log_context_reset()
    fields: dict = {"task": task.name}
    sid = args[0] if args and isinstance(args[0], str) and task.name.startswith("labs.tasks.sandbox_") else None
    if sid:
        from labs.models import Session

        row = Session.objects.filter(id=sid).values_list("user_id", "lab__slug").first()
        fields.update(session_id=sid, user_id=row[0] if row else None, lab=row[1] if row else None)
        fields["step"] = (kwargs or {}).get("step_id")
    log_context_set(**fields)


def on_postrun_log_context(**kwargs) -> None:
    """The next task starts from an empty context."""
    log_context_reset()


def on_prerun(task_id: str, task, **kwargs) -> None:
    """Remember when a watched task began; count a start attempt."""
    if task.name not in WATCHED:
        return
    _started[task_id] = time.monotonic()
    if task.name == START:
        _count(lambda r: counters.counter_inc(r, "lab_sandbox_starts_total", {"host": _host()}))


def on_postrun(task_id: str, task, args=(), retval=None, state: str = "", **kwargs) -> None:
    """Count what the task did, from its result and the session row it left."""
    began = _started.pop(task_id, None)
    if task.name not in WATCHED or state != "SUCCESS":
        return
    if task.name == START:
        _start_outcome(args[0] if args else kwargs.get("kwargs", {}).get("sid"))
    elif task.name == CHECK and isinstance(retval, dict):
        result = "passed" if retval.get("passed") else "failed"
        elapsed = time.monotonic() - began if began is not None else 0.0

        def record(r) -> None:
            counters.counter_inc(r, "lab_checks_total", {"host": _host(), "result": result})
            counters.histogram_observe(r, "lab_check_seconds", {"host": _host()}, elapsed)

        _count(record)
    elif task.name in (STOP, EXITED):
        reason = "stopped" if task.name == STOP else "exited"
        _count(lambda r: counters.counter_inc(r, "lab_sandbox_stops_total", {"host": _host(), "reason": reason}))
    elif task.name == REAP and isinstance(retval, dict):
        def record(r) -> None:
            for action, n in retval.items():
                if n:
                    counters.counter_inc(r, "lab_reaper_actions_total", {"action": action}, n)
            if retval.get("stale"):  # starts no host took in time are failed starts too
                counters.counter_inc(r, "lab_sandbox_start_failures_total", {"host": "", "reason": "no_host"},
                                     retval["stale"])

        _count(record)


def on_failure(sender=None, task_id: str = "", **kwargs) -> None:
    """A watched task that raised: a failed start or a check that could not run."""
    if sender is None or sender.name not in WATCHED:
        return
    if sender.name == START:
        _count(lambda r: counters.counter_inc(r, "lab_sandbox_start_failures_total",
                                              {"host": _host(), "reason": "error"}))
    elif sender.name == CHECK:
        _count(lambda r: counters.counter_inc(r, "lab_checks_total", {"host": _host(), "result": "error"}))


def _start_outcome(sid: str | None) -> None:
    from labs.models import Session

    row = Session.objects.filter(id=sid).values("state", "created_at", "ready_at").first() if sid else None
    if row is None:
        return
    if row["state"] == Session.State.FAILED:
        _count(lambda r: counters.counter_inc(r, "lab_sandbox_start_failures_total",
                                              {"host": _host(), "reason": "error"}))
    elif row["ready_at"] is not None and row["state"] == Session.State.READY:
        seconds = max(0.0, (row["ready_at"] - row["created_at"]).total_seconds())
        _count(lambda r: counters.histogram_observe(r, "lab_sandbox_start_seconds", {"host": _host()}, seconds))


def _count(record) -> None:
    try:
        record(_redis())
    except Exception as exc:  # noqa: BLE001 — metrics never fail the work they count
        log.warning("metrics not recorded: %s", exc)


def connect() -> None:
    """Connect the receivers (idempotent)."""
    task_prerun.connect(on_prerun, dispatch_uid="monitoring.prerun", weak=False)
    task_postrun.connect(on_postrun, dispatch_uid="monitoring.postrun", weak=False)
    task_failure.connect(on_failure, dispatch_uid="monitoring.failure", weak=False)
    task_prerun.connect(on_prerun_log_context, dispatch_uid="monitoring.log_context", weak=False)
    task_postrun.connect(on_postrun_log_context, dispatch_uid="monitoring.log_context_end", weak=False)



