"""`manage.py relay`: this host's terminal relay (PTY masters ⇄ Redis).

Run under the host's PTY holder (`python -m sandbox.relay.holder --socket … -- python
manage.py relay`, as `./lab up` and docker-compose.yml do), it takes back the terminals
of every sandbox still running on the host and carries on; run alone (a throwaway host
for `labs test`), a restart loses the sandboxes. Signals: SIGTERM or SIGINT, stop and
leave the sandboxes to the next relay; SIGUSR1, drain: stop every sandbox of the host.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from django.core.management.base import BaseCommand, CommandError

from labs.tasks import host_reconcile, host_resume, pool_refill_soon
from celery import current_app as app
from sandbox.cgroups import cgroup_parent_remove
from labs.hostconfig import host_config
from sandbox.relay.holder import HolderClient, exclusive_lock
from sandbox.relay.server import Relay
from sandbox.relay.spawn import become_subreaper
from sandbox.relay.tabs import tab_split

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
        cfg.host_dir.mkdir(parents=True, exist_ok=True)
        if exclusive_lock(cfg.host_dir / "relay.lock") is None:  # held until this process ends
            raise CommandError(f"another relay already runs for host {cfg.host}: stop it first")
        holder: HolderClient | None = HolderClient(cfg.holder_socket)
        try:
            held = holder.take()
        except OSError as exc:  # no holder (a relay run alone), or a stale socket
            log.warning("no PTY holder for %s (%s): sandboxes will not survive this relay", cfg.host, exc)
            holder, held = None, {}
        # Held terminals are sandboxes' own (`<sid>`) and their tabs (`<sid>.<n>`).
        resumed = host_resume(host=cfg.host, held={tab_split(t)[0] for t in held})
        adopt = {t for t in held if tab_split(t)[0] in resumed}
        for sid in set(held) - adopt:  # its sandbox or its session is gone: let go
            if holder is not None:
                holder.drop(sid)
            os.close(held[sid])
        removed = host_reconcile(host=cfg.host, keep=resumed)
        if removed:
            log.warning("removed %d orphaned sandboxes on %s: %s", len(removed), cfg.host, removed)
        pool_refill_soon(cfg.host)  # the sweep took the warm pool too (a no-op with LAB_POOL=0)

        def on_exit(sid: str) -> None:
            app.send_task("labs.tasks.sandbox_exited", args=[sid], queue=cfg.queue)

        relay = Relay(cfg, on_exit=on_exit, holder=holder)
        become_subreaper()  # container inits are reparented here when `runc run -d` exits, and reaped
        asyncio.run(self._serve(relay, {sid: held[sid] for sid in adopt}))
        if not relay.draining:
            return  # a restart or an upgrade: the sandboxes wait for the next relay
        # Draining is under way: a second signal must not cut the clean-up short.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            signal.signal(sig, signal.SIG_IGN)
        host_reconcile(host=cfg.host, keep=set(), shutdown=True)
        _reap_children(timeout=5)
        for path in cgroup_parent_remove(cfg.cgroup_parent):  # runc never removes the parent
            log.warning("cgroup %s still has processes; not removed", path)
        try:
            cfg.runc_root.rmdir()  # empty now: leave nothing of this host in /run
        except OSError:
            pass

    async def _serve(self, relay: Relay, adopt: dict[str, int]) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, relay.stop)
        loop.add_signal_handler(signal.SIGUSR1, lambda: relay.stop(drain=True))
        await relay.serve(ready=lambda: log.info("relay of %s ready", relay.cfg.host), adopt=adopt)
