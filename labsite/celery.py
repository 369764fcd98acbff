"""The Celery app. Every worker is a sandbox host: it consumes its own queue
(host.<LAB_HOST_NAME>). The host's terminal relay is a process of its own, under the
host's PTY holder (docs/architecture.md): a worker that dies or restarts takes no
sandbox and no terminal with it."""
from __future__ import annotations

import os

from celery import Celery
from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings.dev")

app = Celery("labsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["labs"])


def worker_key(host: str) -> str:
    """Set while a Celery worker of this host is up (`./lab up` waits for it)."""
    return f"lab:worker:{host}"


@celeryd_after_setup.connect
def _consume_host_queue(sender: str, instance, **kwargs) -> None:
    """Tasks for sandboxes of this host arrive on host.<name>."""
    from django.conf import settings

    instance.app.amqp.queues.select_add(f"host.{settings.LAB_HOST_NAME}")
    instance.app.amqp.queues.select_add(f"host.{settings.LAB_HOST_NAME}.checks")  # checks, apart from start/stop


@worker_ready.connect
def _announce(**kwargs) -> None:
    from django.conf import settings

    from labs.redis import sync_redis

    sync_redis().set(worker_key(settings.LAB_HOST_NAME), os.getpid())
    # The warm pool to its size: filled if LAB_POOL asks for one, emptied if it was
    # turned off since (a no-op when it is off and the host holds none).
    app.send_task("labs.tasks.pool_refill", queue=f"host.{settings.LAB_HOST_NAME}", expires=60)


@worker_shutdown.connect
def _withdraw(**kwargs) -> None:
    from django.conf import settings

    from labs.redis import sync_redis

    try:
        r = sync_redis()
        if r.get(worker_key(settings.LAB_HOST_NAME)) == str(os.getpid()).encode():
            r.delete(worker_key(settings.LAB_HOST_NAME))
    except Exception:  # Redis may be the thing that is gone
        pass
