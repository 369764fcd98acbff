"""Events the labs app publishes for the apps above it (cohort dashboards), as Celery
tasks sent by name after commit: labs never imports them, and the trainee's request
never waits for their work. Events for the same trainee and lab that arrive while an
update of theirs is still queued become that one task (it reads the state as it is when
it runs). No countdown: a task held back with an ETA is unacknowledged in the worker,
and kombu's Redis transport crashes the worker when the broker restarts under it."""
from __future__ import annotations

import logging

from django.db import transaction

log = logging.getLogger(__name__)
DASHBOARDS_TASK = "cohorts.tasks.dashboards_update"
# The "queued" mark outlives a lost task by this long at most.
PENDING_MS = 5000


def pending_key(user_id: int, lab_id: int) -> str:
    """Set while a dashboards update of this trainee and lab is queued."""
    return f"lab:dash:pending:{user_id}:{lab_id}"


def _send(**kwargs: object) -> None:
    from labs.redis import sync_redis
    from celery import current_app as app

    try:
        if "lab_id" in kwargs and not sync_redis().set(pending_key(kwargs["user_id"], kwargs["lab_id"]), 1,
                                                       nx=True, px=PENDING_MS):
            return  # one is queued already: it will read this change too
        app.send_task(DASHBOARDS_TASK, kwargs=kwargs, expires=120)
    except Exception:  # a dashboard that misses one event refetches; the trainee's action stands
        log.warning("could not publish a dashboards event %s", kwargs, exc_info=True)


def progress_changed(*, user_id: int, lab_id: int) -> None:
    """A trainee's progress on a lab changed (check, hint, solution, answer, pass)."""
    transaction.on_commit(lambda: _send(user_id=user_id, lab_id=lab_id))


def session_changed(*, sid: str) -> None:
    """A trainee's sandbox changed state (the task looks up whose and which lab)."""
    transaction.on_commit(lambda: _send(sid=sid))
