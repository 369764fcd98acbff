"""The warm pool's sizing and claiming (sandbox/pool.py) against the run's real Redis."""
from __future__ import annotations

import time
import uuid

import pytest
import redis
from django.conf import settings

from sandbox.pool import FLAVOURS, flavour, flavour_id, free_key, pool_claim, pool_note_start, pool_target
from sandbox.runtime import Limits


@pytest.fixture
def r():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


def _demand(r, host: str, minutes_ago: int, fl: str, n: int) -> None:
    minute = int(time.time() // 60) - minutes_ago
    r.hincrby(f"lab:pool:{host}:demand:{minute}", flavour_id(fl), n)
    r.hsetnx(FLAVOURS, flavour_id(fl), fl)


def test_the_pool_holds_the_most_started_lab_as_many_as_its_busiest_two_minutes_within_bounds(r):
    host = f"pooltest{uuid.uuid4().hex[:8]}"
    base = flavour("lab/base:latest", Limits())
    other = flavour("lab/base:latest", Limits(memory_mb=64))
    assert base != other and flavour("lab/base:latest", Limits()) == base
    assert pool_target(r, host=host, window_minutes=60, floor=0, most=50) == (None, 0)  # no demand, no pool
    # A class split across a minute boundary: 30 + 25 in two minutes in a row.
    _demand(r, host, 10, base, 30)
    _demand(r, host, 9, base, 25)
    _demand(r, host, 2, other, 40)  # more in one minute, fewer in all
    _demand(r, host, 1, base, 3)
    assert pool_target(r, host=host, window_minutes=60, floor=0, most=100) == (base, 55)
    assert pool_target(r, host=host, window_minutes=60, floor=0, most=20) == (base, 20)  # at most LAB_POOL
    assert pool_target(r, host=host, window_minutes=60, floor=0, most=0) == (None, 0)  # off
    # Outside the window, demand no longer counts; the floor keeps the last lab's flavour.
    assert pool_target(r, host=host, window_minutes=5, floor=0, most=100) == (other, 40)
    assert pool_target(r, host=host, window_minutes=1, floor=4, most=100) == (other, 4)
    assert pool_target(r, host=f"{host}x", window_minutes=60, floor=4, most=100) == (None, 0)  # floor, but no lab yet


def test_a_pool_sandbox_is_claimed_by_one_caller_only_and_starts_are_counted(r):
    host = f"pooltest{uuid.uuid4().hex[:8]}"
    fl = flavour("lab/base:latest", Limits())
    r.sadd(free_key(host, flavour_id(fl)), "a" * 20, "b" * 20)
    got = [pool_claim(r, host=host, flavour_json=fl) for _ in range(3)]
    assert sorted(g for g in got if g) == ["a" * 20, "b" * 20] and got[2] is None
    assert pool_claim(r, host=host, flavour_json=flavour("lab/other:1", Limits())) is None
    pool_note_start(r, host=host, flavour_json=fl, window_minutes=60)
    pool_note_start(r, host=host, flavour_json=fl, window_minutes=60)
    assert pool_target(r, host=host, window_minutes=60, floor=0, most=10) == (fl, 2)
    key = f"lab:pool:{host}:demand:{int(time.time() // 60)}"
    assert 0 < r.ttl(key) <= 61 * 60
