"""`manage.py relay`: this host's terminal relay (the Celery worker starts it)."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from django.core.management.base import BaseCommand

from labs.tasks import host_reconcile
from labsite.celery import app
from sandbox.cgroups import cgroup_parent_remove
from sandbox.config import host_config
from sandbox.relay.server import Relay
from sandbox.relay.spawn import become_subreaper

log = logging.getLogger("labs.relay")


def _reap_children(*, timeout: float) -> None:
    """Wait for the container inits `runc delete` just killed: this relay is their
    subreaper, and its event loop (which reaped them) has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # no children left
        if pid == 0:
            time.sleep(0.02)  # some still dying


class Command(BaseCommand):
    help = "Run this worker host's terminal relay (PTY masters ⇄ Redis)."

    def handle(self, *args, **options) -> None:
        cfg = host_config()
        # A new relay holds no terminal: whatever ran here before is lost.
        removed = host_reconcile(host=cfg.host, keep=set())
        if removed:
            log.warning("removed %d orphaned sandboxes on %s: %s", len(removed), cfg.host, removed)

        def on_exit(sid: str) -> None:
            app.send_task("labs.tasks.sandbox_exited", args=[sid], queue=cfg.queue)

        become_subreaper()  # container inits are reparented here when `runc run -d` exits, and reaped
        asyncio.run(self._serve(Relay(cfg, on_exit=on_exit)))
        # Stopping is under way: a second signal (Ctrl-C reaches the whole process group,
        # then the worker sends SIGTERM) must not cut the clean-up short.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        host_reconcile(host=cfg.host, keep=set())
        _reap_children(timeout=5)
        for path in cgroup_parent_remove(cfg.cgroup_parent):  # runc never removes the parent
            log.warning("cgroup %s still has processes; not removed", path)
        try:
            cfg.runc_root.rmdir()  # empty now: leave nothing of this host in /run
        except OSError:
            pass

    async def _serve(self, relay: Relay) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, relay.stop)
        await relay.serve(ready=lambda: log.info("relay of %s ready", relay.cfg.host))
