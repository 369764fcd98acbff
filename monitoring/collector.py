"""What /metrics shows, read at scrape time from the shared sources: the hosts'
heartbeats and the event counters in Redis, the sessions in the database."""
from __future__ import annotations

import json
import logging
from typing import Iterator

import redis
from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from labs.models import Session
from monitoring import counters
from sandbox.relay import streams

log = logging.getLogger(__name__)

COUNTER_HELP = {
    "lab_sandbox_starts_total": ("Sandbox starts a host began", ["host"]),
    "lab_sandbox_start_failures_total": ("Sandbox starts that failed (reason: error, or no_host took it in time)",
                                         ["host", "reason"]),
    "lab_sandbox_stops_total": ("Sandboxes torn down (reason: stopped by request or the reaper, exited shell)",
                                ["host", "reason"]),
    "lab_checks_total": ("Step checks run in sandboxes, by result", ["host", "result"]),
    "lab_reaper_actions_total": ("What the reaper did (expired, idle, warned, stale)", ["action"]),
}
HISTOGRAM_HELP = {
    "lab_sandbox_start_seconds": ("Start request to a ready sandbox (its shell at the prompt)", ["host"]),
    "lab_check_seconds": ("Time a step check took on its host", ["host"]),
}


class LabCollector(Collector):
    """One scrape: every value comes from Redis or the database, none from this process."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("lab_redis_up", "1 when Redis (broker, streams, counters) answers PING")
        try:
            self.r.ping()
            reachable = True
        except redis.RedisError as exc:
            log.warning("metrics: Redis unreachable: %s", exc)
            reachable = False
        up.add_metric([], 1.0 if reachable else 0.0)
        yield up
        yield from self._sessions()
        if reachable:
            try:
                yield from self._hosts()
                yield from self._events()
            except redis.RedisError as exc:
                log.warning("metrics: Redis failed during the scrape: %s", exc)

    def _sessions(self) -> Iterator[Metric]:
        states = GaugeMetricFamily("lab_sessions", "Sessions by state (live ones: starting, ready, stopping)",
                                   labels=["state"])
        counts = dict(Session.objects.filter(state__in=Session.LIVE_STATES).values_list("state")
                      .annotate(n=Count("id")).order_by())
        for state in Session.LIVE_STATES:
            states.add_metric([state], float(counts.get(state, 0)))
        yield states
        trainees = GaugeMetricFamily("lab_active_trainees", "Trainees with a live sandbox, per lab", labels=["lab"])
        per_lab = (Session.objects.filter(state__in=Session.LIVE_STATES).values_list("lab__slug")
                   .annotate(n=Count("user", distinct=True)).order_by())
        for slug, n in per_lab:
            trainees.add_metric([slug], float(n))
        yield trainees

    def _hosts(self) -> Iterator[Metric]:
        names = sorted(n.decode() for n in self.r.smembers(streams.HOSTS_SET))
        beats = self.r.mget([streams.host_key(n) for n in names]) if names else []
        up = GaugeMetricFamily("lab_host_up", "1 while a host's relay heartbeat is fresh (0: relay or worker down)",
                               labels=["host"])
        live = GaugeMetricFamily("lab_host_sandboxes", "Live sandboxes (terminals the relay holds) per host",
                                 labels=["host"])
        capacity = GaugeMetricFamily("lab_host_capacity", "Sandboxes a host runs at once (LAB_HOST_CAPACITY)",
                                     labels=["host"])
        paused = GaugeMetricFamily("lab_relay_paused_terminals",
                                   "Terminals the relay stopped reading because viewers fell behind", labels=["host"])
        backlog = GaugeMetricFamily("lab_relay_backlog_bytes",
                                    "Output the relay holds or streamed that viewers have not acknowledged",
                                    labels=["host"])
        for name, raw in zip(names, beats):
            up.add_metric([name], 1.0 if raw else 0.0)
            if not raw:
                continue
            beat = json.loads(raw)
            live.add_metric([name], float(beat.get("live", 0)))
            capacity.add_metric([name], float(beat.get("capacity", 0)))
            paused.add_metric([name], float(beat.get("paused", 0)))
            backlog.add_metric([name], float(beat.get("backlog", 0)))
        yield from (up, live, capacity, paused, backlog)

    def _events(self) -> Iterator[Metric]:
        found = counters.counters_read(self.r)
        for name, (text, labels) in COUNTER_HELP.items():
            family = CounterMetricFamily(name.removesuffix("_total"), text, labels=labels)
            for values, value in found.get(name, []):
                family.add_metric([values.get(label, "") for label in labels], value)
            yield family
        hist = counters.histograms_read(self.r)
        for name, (text, labels) in HISTOGRAM_HELP.items():
            family = HistogramMetricFamily(name, text, labels=labels)
            for values, buckets, total in hist.get(name, []):
                family.add_metric([values.get(label, "") for label in labels], buckets, total)
            yield family
