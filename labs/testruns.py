"""`labs test` from the page: a Celery task on a worker host runs the lab version's test
(labs.labtest) and streams each row of the table to the page through the channel layer
(small events: one per step); the table is stored with the version."""
from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from asgiref.sync import async_to_sync
from celery import shared_task
from channels.layers import get_channel_layer
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from labs import selectors
from labs.exceptions import Conflict, NotFound, ServiceUnavailable
from labs.models import LabVersion
from labs.i18n import say

log = logging.getLogger(__name__)
T = LabVersion.TestState
# A test still queued or running after this long is taken as lost (its host died).
STALE_AFTER = timedelta(minutes=20)


def test_group(version_id: int) -> str:
    """Channel-layer group of the pages watching a version's test."""
    return f"labtest.{version_id}"


def _broadcast(version_id: int, event: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(test_group(version_id), {"type": "labtest.event", "event": event})
    except Exception:  # the stored table is the truth; a page that missed an event reloads it
        log.warning("could not broadcast the test of version %s", version_id, exc_info=True)


def version_test_request(*, user: AbstractBaseUser, version: LabVersion) -> LabVersion:
    """Queue `labs test` of the version on a live worker host (never in the web process)."""
    if not selectors.may_edit(user=user, lab=version.lab):
        raise NotFound(f"no lab named {version.lab.slug!r}")
    busy = version.test_state in (T.QUEUED, T.RUNNING)
    if busy and version.tested_at and timezone.now() - version.tested_at < STALE_AFTER:
        raise Conflict(say("这个版本正在测试。", "This version is being tested already."))
    hosts = [h for h in selectors.hosts_alive() if h.get("capacity", 0) > 0]  # not another test's relay
    if not hosts:
        raise ServiceUnavailable(say("沙箱服务不可用：没有在线的工作节点。", "The sandbox service is unavailable: no worker host is online."))
    host = max(hosts, key=lambda h: h.get("capacity", 0) - h.get("live", 0))["host"]
    with transaction.atomic():
        LabVersion.objects.filter(pk=version.pk).update(test_state=T.QUEUED, test_rows=[], tested_by=user,
                                                        tested_at=timezone.now())
        # "queued" before the task can run: a quick worker's "running" must come after it.
        _broadcast(version.pk, {"type": "state", "state": T.QUEUED})
        transaction.on_commit(lambda: _send(version.pk, host))
    version.refresh_from_db()
    return version


def _send(version_id: int, host: str) -> None:
    from celery import current_app as app

    app.send_task("labs.testruns.version_test", args=[version_id], queue=f"host.{host}", expires=600)


def _row(outcome) -> dict:
    return {"step": outcome.step, "ok": bool(outcome.ok), "detail": outcome.detail[:500],
            "seconds": round(outcome.seconds, 2)}


def version_test_run(*, version_id: int) -> str:
    """Run the version's test here (a worker host), storing and streaming each row; the state."""
    from labs.labfile import load_lab
    from labs.labtest import private_relay, test_lab
    from labs.hostconfig import host_config

    claimed = LabVersion.objects.filter(pk=version_id, test_state=T.QUEUED).update(test_state=T.RUNNING)
    if not claimed:
        return "skipped"  # redelivered, or asked again meanwhile
    _broadcast(version_id, {"type": "state", "state": T.RUNNING})
    path = LabVersion.objects.filter(pk=version_id).values_list("path", flat=True).get()
    rows: list[dict] = []

    def report(outcome) -> None:
        rows.append(_row(outcome))
        LabVersion.objects.filter(pk=version_id).update(test_rows=rows)
        _broadcast(version_id, {"type": "row", "index": len(rows) - 1, "row": rows[-1]})

    try:
        spec = load_lab(Path(path))
        with private_relay(host_config()) as cfg:
            test_lab(spec, cfg, say=report)
    except Exception as exc:  # a lab that cannot load, a relay that cannot start: a failed row
        log.exception("test of version %s failed to run", version_id)
        rows.append({"step": "(test)", "ok": False, "detail": str(exc)[:500], "seconds": 0})
    state = T.PASSED if rows and all(r["ok"] for r in rows) else T.FAILED
    LabVersion.objects.filter(pk=version_id).update(test_state=state, test_rows=rows, tested_at=timezone.now())
    _broadcast(version_id, {"type": "done", "state": state, "rows": rows})
    return state


@shared_task(name="labs.testruns.version_test", soft_time_limit=900, time_limit=960)
def version_test(version_id: int) -> str:
    """Celery: `labs test` of one lab version on this host."""
    return version_test_run(version_id=version_id)
