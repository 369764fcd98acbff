"""Counters and histograms kept in Redis, shared by every web and worker process.

Each process adds to the same Redis hashes (HINCRBYFLOAT is atomic), and /metrics reads
them back, so a start counted by one Celery child and a scrape answered by another web
process agree — no per-process state, no prometheus_client multiprocess directory.
A Redis restart resets them to zero, which Prometheus' rate() handles as a counter reset.
"""
from __future__ import annotations

import json
import logging
from bisect import bisect_left

import redis

log = logging.getLogger(__name__)

COUNTERS = "lab:metrics:counters"
HISTOGRAMS = "lab:metrics:histograms"
# Seconds: a prompt within 100 ms is the target (docs/architecture.md); 45 s is LAB_START_TIMEOUT.
START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CHECK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BUCKETS = {"lab_sandbox_start_seconds": START_BUCKETS, "lab_check_seconds": CHECK_BUCKETS}


def _field(name: str, labels: dict[str, str], suffix: str = "") -> str:
    return json.dumps([name, labels, suffix], sort_keys=True, separators=(",", ":"))


def counter_inc(r: redis.Redis, name: str, labels: dict[str, str], amount: float = 1.0) -> None:
    """Add to a counter."""
    r.hincrbyfloat(COUNTERS, _field(name, labels), amount)


def histogram_observe(r: redis.Redis, name: str, labels: dict[str, str], value: float) -> None:
    """Count one observation in its bucket (buckets are made cumulative when read)."""
    bounds = BUCKETS[name]
    index = bisect_left(bounds, value)
    bucket = str(bounds[index]) if index < len(bounds) else "+Inf"
    with r.pipeline(transaction=True) as p:
        p.hincrbyfloat(HISTOGRAMS, _field(name, labels, bucket), 1)
        p.hincrbyfloat(HISTOGRAMS, _field(name, labels, "_sum"), value)
        p.execute()


def counters_read(r: redis.Redis) -> dict[str, list[tuple[dict, float]]]:
    """{name: [(labels, value)]} of every counter."""
    found: dict[str, list[tuple[dict, float]]] = {}
    for field, value in r.hgetall(COUNTERS).items():
        name, labels, _ = json.loads(field)
        found.setdefault(name, []).append((labels, float(value)))
    return found


def histograms_read(r: redis.Redis) -> dict[str, list[tuple[dict, list[tuple[str, float]], float]]]:
    """{name: [(labels, cumulative buckets [(le, count)], sum)]} of every histogram."""
    raw: dict[tuple[str, str], dict[str, float]] = {}
    for field, value in r.hgetall(HISTOGRAMS).items():
        name, labels, part = json.loads(field)
        raw.setdefault((name, json.dumps(labels, sort_keys=True)), {})[part] = float(value)
    found: dict[str, list] = {}
    for (name, labels), parts in raw.items():
        running, buckets = 0.0, []
        for bound in [*map(str, BUCKETS[name]), "+Inf"]:
            running += parts.get(bound, 0.0)
            buckets.append((bound, running))
        found.setdefault(name, []).append((json.loads(labels), buckets, parts.get("_sum", 0.0)))
    return found
