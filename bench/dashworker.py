"""The Celery worker of the bench's dashboard section: the project's own app and tasks,
plus a count of the database queries every task makes, added up in Redis (the bench
reads the worker's side of "queries per event" from there).

    python -m celery -A bench.dashworker worker ...
"""
from __future__ import annotations

import time

from celery.signals import task_postrun, task_prerun

from labsite.celery import app  # noqa: F401  (`celery -A bench.dashworker` runs this app)

COUNTS_KEY = "bench:dash:tasks"
_running: dict[str, tuple[object, list[int], float]] = {}


def task_kind(kwargs: dict | None) -> str:
    """join (a row per assigned lab), lab (a flush of changed progress rows) or sid (a sandbox)."""
    kwargs = kwargs or {}
    if kwargs.get("cohort_id") is not None:
        return "join"
    return "lab" if kwargs.get("flush") or kwargs.get("lab_id") is not None else "sid"


@task_prerun.connect
def _count_from_here(task_id: str, task, **kwargs) -> None:
    from django.db import connection

    count = [0]

    def counting(execute, sql, params, many, context):
        count[0] += 1
        return execute(sql, params, many, context)

    wrapper = connection.execute_wrapper(counting)
    wrapper.__enter__()
    _running[task_id] = (wrapper, count, time.perf_counter())


@task_postrun.connect
def _count_to_redis(task_id: str, task, kwargs: dict | None = None, retval=None, **extra) -> None:
    from labs.redis import sync_redis

    found = _running.pop(task_id, None)
    if found is None:
        return
    wrapper, count, t0 = found
    wrapper.__exit__(None, None, None)
    kind = task_kind(kwargs) if task.name == "cohorts.tasks.dashboards_update" else "other"
    pipe = sync_redis().pipeline()
    pipe.hincrby(COUNTS_KEY, f"{kind}:tasks", 1)
    pipe.hincrby(COUNTS_KEY, f"{kind}:queries", count[0])
    pipe.hincrby(COUNTS_KEY, f"{kind}:rows", retval if isinstance(retval, int) else 0)  # rows the task sent
    pipe.hincrbyfloat(COUNTS_KEY, f"{kind}:ms", (time.perf_counter() - t0) * 1000)
    pipe.execute()
