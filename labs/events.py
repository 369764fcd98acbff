"""Events the labs app publishes for the apps above it (cohort dashboards), as Celery
tasks sent by name after commit: labs never imports them, and the trainee's request
never waits for their work.

A trainee's changed progress is marked in one Redis set (`user_id:lab_id`, so a set of at
most trainees × labs members) and one flush task is queued unless one is queued already;
the flush (cohorts) sends every marked row, reading each as it is when it runs. Events
that arrive while a flush waits ride with it, whoever they are about: under load there
are fewer, larger flushes instead of a queue of one task per event (measured in
`./lab bench --only dashboard`). No countdown: a task held back with an ETA is
unacknowledged in the worker, and kombu's Redis transport crashes the worker when the
broker restarts under it."""
from __future__ import annotations

import logging

from django.db import transaction

log = logging.getLogger(__name__)
DASHBOARDS_TASK = "cohorts.tasks.dashboards_update"
# Rows changed since the last flush began ("user_id:lab_id").
DIRTY_KEY = "lab:dash:dirty"
# Set while a flush is queued; a lost flush is replaced by the next event after this long.
FLUSH_KEY = "lab:dash:flush"
PENDING_MS = 5000


def dirty_member(user_id: int, lab_id: int) -> str:
    """The DIRTY_KEY member of a trainee's row of a lab."""
    return f"{user_id}:{lab_id}"


def flush_queue() -> None:
    """Queue a flush unless one is queued already."""
    from labs.redis import sync_redis
    from celery import current_app as app

    r = sync_redis()
    if r.set(FLUSH_KEY, 1, nx=True, px=PENDING_MS):
        try:
            app.send_task(DASHBOARDS_TASK, kwargs={"flush": True}, expires=120)
        except Exception:
            r.delete(FLUSH_KEY)  # not queued after all: the next event tries again at once
            raise


def _mark(user_id: int, lab_id: int) -> None:
    from labs.redis import sync_redis

    try:
        sync_redis().sadd(DIRTY_KEY, dirty_member(user_id, lab_id))
        flush_queue()
    except Exception:  # a dashboard that misses one event refetches; the trainee's action stands
        log.warning("could not publish a dashboards event for user %s lab %s", user_id, lab_id, exc_info=True)


def _send(**kwargs: object) -> None:
    from celery import current_app as app

    try:
        app.send_task(DASHBOARDS_TASK, kwargs=kwargs, expires=120)
    except Exception:
        log.warning("could not publish a dashboards event %s", kwargs, exc_info=True)


def progress_changed(*, user_id: int, lab_id: int) -> None:
    """A trainee's progress on a lab changed (check, hint, solution, answer, pass)."""
    transaction.on_commit(lambda: _mark(user_id, lab_id))


def session_changed(*, sid: str) -> None:
    """A trainee's sandbox changed state (the task looks up whose and which lab)."""
    transaction.on_commit(lambda: _send(sid=sid))
