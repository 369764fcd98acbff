"""The Celery app. Every worker is a sandbox host: it consumes its own queue
(host.<LAB_HOST_NAME>) and runs the host's terminal relay beside it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from celery import Celery, bootsteps
from celery.signals import celeryd_after_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings.dev")

app = Celery("labsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["labs"])


@celeryd_after_setup.connect
def _consume_host_queue(sender: str, instance, **kwargs) -> None:
    """Tasks for sandboxes of this host arrive on host.<name>."""
    from django.conf import settings

    instance.app.amqp.queues.select_add(f"host.{settings.LAB_HOST_NAME}")
    instance.app.amqp.queues.select_add(f"host.{settings.LAB_HOST_NAME}.checks")  # checks, apart from start/stop


class RelayStep(bootsteps.StartStopStep):
    """Start this host's relay with the worker; it dies with the worker, even on SIGKILL."""

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.proc: subprocess.Popen | None = None

    def start(self, parent) -> None:
        from sandbox.relay.spawn import die_with_parent

        manage = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "manage.py")
        self.proc = subprocess.Popen([sys.executable, manage, "relay"], preexec_fn=die_with_parent)

    def stop(self, parent) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


if os.environ.get("LAB_WORKER_RELAY", "1") == "1":
    app.steps["worker"].add(RelayStep)
