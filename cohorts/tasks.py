"""Celery tasks of the cohorts app: dashboard updates, off the trainee's request path.
labs publishes its changes by sending `cohorts.tasks.dashboards_update` by name
(labs.events); it never imports this module."""
from __future__ import annotations

from celery import shared_task

from cohorts.services import dashboards_flush, dashboards_notify


@shared_task(name="cohorts.tasks.dashboards_update", soft_time_limit=30, time_limit=60, ignore_result=True)
def dashboards_update(user_id: int | None = None, lab_id: int | None = None, sid: str | None = None,
                      cohort_id: int | None = None, flush: bool = False) -> int:
    """Send changed rows to the open dashboards: every row marked since the last flush
    (flush), or one trainee's (a sandbox's sid, a join's cohort_id). Returns rows sent."""
    if flush:
        return dashboards_flush()
    return dashboards_notify(user_id=user_id, lab_id=lab_id, sid=sid, cohort_id=cohort_id)
