"""The warm pool (sandbox/pool.py): a host keeps started, unassigned sandboxes and hands
one out on Start. Real host (holder, relay, Celery worker with LAB_POOL set), real runc;
the run's main host is drained meanwhile, so every start lands on the pool's host."""
from __future__ import annotations

import json
import re
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest
from django.test import Client
from websockets.exceptions import ConnectionClosed

from tests.conftest import IS_ROOT, ROOT, _subprocess_env, start_worker
from tests.labs.test_sessions import Terminal, smoke_lab, start_session, ws_connect  # noqa: F401  (fixture)
from tests.support import wait_for

pytestmark = [
    pytest.mark.root, pytest.mark.sandbox,
    pytest.mark.skipif(not IS_ROOT, reason="sandboxes need root"),
    pytest.mark.django_db(transaction=True),
]

POOL_SIZE = 2
# What the trainee and a check can see of their sandbox, one section per line group.
PROBE = r"""
echo "== hostname"; hostname
# The trainee's processes (the check runner's own, `timeout …`, are the host's business).
echo "== procs"; ps -o pid,ppid,user,args | awk 'NR == 1 || $1 == 1 || ($2 == 1 && $4 != "timeout")'
shell=$(ps -o pid,ppid,comm | awk '$2 == 1 && $3 != "timeout" { print $1 }')
echo "== env"; tr '\0' '\n' < /proc/$shell/environ | sort
echo "== root"; ls -A /root; echo "== tmp"; ls -A /tmp
echo "== setup"; cat /etc/pool-probe
echo "== lab"; ls -A /var/lib/lab | sort
echo "== limits"; cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max
"""

def _lab(tmp_path: Path):
    """A lab with setup and limits of its own, so both are visible in the sandbox."""
    from labs.labfile import load_lab
    from labs.services import lab_import

    src = ROOT / "tests" / "fixtures" / "labs" / "smoke"
    shutil.copytree(src, tmp_path / "pooled")
    lab_yaml = tmp_path / "pooled" / "lab.yaml"
    text = lab_yaml.read_text().replace("slug: smoke", "slug: pooled")
    text = text.replace("limits: {memory_mb: 128, pids: 64, disk_mb: 32}",
                        "limits: {memory_mb: 96, pids: 48, disk_mb: 24}\nsetup: |\n  echo made-by-setup > /etc/pool-probe")
    lab_yaml.write_text(text)
    return lab_import(spec=load_lab(tmp_path / "pooled"))[0]


@pytest.fixture
def pool_host(worker, settings, transactional_db):
    """A second host with LAB_POOL set (the web side in this process too); the run's
    main host drained while the test runs."""
    from labs.services import host_drain

    settings.LAB_POOL = POOL_SIZE
    host = start_worker(f"{worker.host}p", env=dict(_subprocess_env(), LAB_POOL=str(POOL_SIZE),
                                                      LAB_POOL_MIN=str(POOL_SIZE), LAB_HOST_CAPACITY="20"))
    host_drain(host=worker.host)
    try:
        yield host
    finally:
        host_drain(host=worker.host, drained=False)
        host_drain(host=host.host, drained=False)
        host.stop()
        from labs.redis import sync_redis

        for key in sync_redis().scan_iter(match=f"lab:pool:{host.host}:*"):
            sync_redis().delete(key)


def _free(host: str) -> set[str]:
    from labs.redis import sync_redis

    return {m.decode() for k in sync_redis().scan_iter(match=f"lab:pool:{host}:free:*") for m in sync_redis().smembers(k)}


def _containers(host: str) -> set[str]:
    from labs.hostconfig import host_config
    from sandbox.runtime import runc_list

    return {c["id"] for c in runc_list(replace(host_config(), host=host))}


def _probe(host: str, sid: str) -> str:
    from labs.hostconfig import host_config
    from sandbox.service import sandbox_exec

    res = sandbox_exec(replace(host_config(), host=host), sid, PROBE, timeout=20)
    assert res.exit_code == 0, res.output
    return res.output.replace(f"lab-{sid[:8]}", "lab-<sid>")


def _start(client: Client, lab: str, cols: int, rows: int) -> dict:
    resp = client.post("/api/sessions/", {"lab": lab, "cols": cols, "rows": rows}, content_type="application/json")
    assert resp.status_code == 201, resp.content
    sid = resp.json()["id"]
    return wait_for(lambda: (d := client.get(f"/api/sessions/{sid}/").json())["state"] == "ready" and d,
                    timeout=60, what="sandbox ready")


def test_a_pooled_sandbox_is_what_a_fresh_start_makes_and_is_handed_out_once(pool_host, web, make_user, tmp_path):
    from labs.models import Recording, Session
    from labs.hostconfig import host_config

    _lab(tmp_path)
    fresh_client, pooled_client = Client(), Client()
    fresh_client.force_login(make_user("fresh"))
    pooled_client.force_login(make_user("pooled"))
    # The first start of the lab on an empty pool is a fresh one; it is also the demand
    # that makes the host fill its pool with this lab's flavour.
    fresh = _start(fresh_client, "pooled", 100, 30)
    assert fresh["host"] == pool_host.host
    assert fresh["id"] not in _free(pool_host.host)
    waiting = wait_for(lambda: len(_free(pool_host.host)) == POOL_SIZE and _free(pool_host.host),
                       timeout=90, what="the pool filled")
    assert fresh["id"] not in waiting and waiting <= _containers(pool_host.host)

    claimed_at = time.time()
    pooled = _start(pooled_client, "pooled", 132, 41)
    assert pooled["id"] in waiting, "the start did not take a pool sandbox"
    assert pooled["id"] not in _free(pool_host.host)  # out of the pool for good

    # What the trainee and the checks see is the same, but for the session's own name.
    a, b = _probe(pool_host.host, fresh["id"]), _probe(pool_host.host, pooled["id"])
    assert a == b
    assert "made-by-setup" in b and "lab-<sid>" in b and "TERM=xterm-256color" in b and "-l\n" in b
    assert re.search(r"== root\n== tmp\n== setup", b), b  # /root and /tmp volumes empty
    assert "100663296\n48\n" in b  # the lab's memory (96 MiB) and pids limits
    # The page's geometry, through the terminal, in each.
    for client, s, size in ((fresh_client, fresh, "30 100"), (pooled_client, pooled, "41 132")):
        with ws_connect(web, client, s["ws"]) as ws:
            term = Terminal(ws)
            term.send("stty size\r")
            term.expect(size)

    # The pool is refilled, with new sandboxes; the handed-out one never comes back.
    refilled = wait_for(lambda: len(_free(pool_host.host)) == POOL_SIZE and _free(pool_host.host),
                        timeout=90, what="the pool refilled")
    assert pooled["id"] not in refilled and fresh["id"] not in refilled
    assert pooled_client.delete(f"/api/sessions/{pooled['id']}/").status_code == 204
    wait_for(lambda: pooled["id"] not in _containers(pool_host.host), timeout=30, what="pooled session gone")
    assert pooled["id"] not in _free(pool_host.host)
    assert not (host_config().data_dir / "hosts" / pool_host.host / "sessions" / pooled["id"]).exists()
    wait_for(lambda: Session.objects.get(id=pooled["id"]).state == "stopped", timeout=30, what="stopped")
    # The recording starts at assignment (not when the pool made the sandbox), prompt first.
    cast = Recording.objects.get(session_id=pooled["id"]).cast.splitlines()
    header = json.loads(cast[0])
    assert header["timestamp"] >= int(claimed_at) and (header["width"], header["height"]) == (132, 41)
    first = json.loads(cast[1])
    assert first[0] < 1.0 and ":~# " in first[2], cast[:3]
    assert "stty size" in "".join(json.loads(line)[2] for line in cast[1:])


def test_pool_sandboxes_count_against_capacity_and_a_crash_leaves_none_behind(pool_host, web, make_user, tmp_path):
    from labs.redis import sync_redis
    from labs.hostconfig import host_config
    from sandbox.relay import streams

    _lab(tmp_path)
    client = Client()
    client.force_login(make_user("t"))
    session = _start(client, "pooled", 80, 24)
    pool = wait_for(lambda: len(_free(pool_host.host)) == POOL_SIZE and _free(pool_host.host), timeout=90, what="pool")

    def beat():
        return json.loads(sync_redis().get(streams.host_key(pool_host.host)))

    # The heartbeat counts them: the web's choice of host sees them as taken places.
    wait_for(lambda: beat()["live"] == 1 + POOL_SIZE and beat()["pooled"] == POOL_SIZE, timeout=10, what="beat")
    assert set(beat()["activity"]) == {session["id"]}  # no idle clock for unassigned ones
    # Nobody reaches an unassigned sandbox: it has no session, so neither the API nor the
    # terminal WebSocket knows it (the same answer as for an id that never existed).
    waiting = sorted(pool)[0]
    assert client.get(f"/api/sessions/{waiting}/").status_code == 404
    with ws_connect(web, client, f"/ws/terminal/{waiting}/") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
    assert closed.value.rcvd.code == 4404

    # The whole host dies at once; when it comes back, reconcile sweeps the old pool
    # (and the lost session) and the pool is made again from new sandboxes.
    pool_host.stop(signal.SIGKILL)
    pool_host.restart()
    sessions_dir = host_config().data_dir / "hosts" / pool_host.host / "sessions"
    fresh_pool = wait_for(lambda: len(_free(pool_host.host)) == POOL_SIZE and _free(pool_host.host),
                          timeout=90, what="pool made again")
    assert not fresh_pool & pool
    assert _containers(pool_host.host) == fresh_pool
    assert {p.name for p in sessions_dir.iterdir()} == fresh_pool
    mounts = Path("/proc/mounts").read_text()
    for sid in pool | {session["id"]}:
        assert f"/sessions/{sid}/" not in mounts
    assert client.get(f"/api/sessions/{session['id']}/").json()["state"] == "lost"

    # A drained host keeps no pool: it empties, and fills again once undrained.
    from labs.services import host_drain

    host_drain(host=pool_host.host)
    wait_for(lambda: not _containers(pool_host.host) and not _free(pool_host.host), timeout=60, what="pool emptied")
    host_drain(host=pool_host.host, drained=False)
    wait_for(lambda: len(_free(pool_host.host)) == POOL_SIZE, timeout=90, what="pool filled again")


def test_with_the_pool_off_a_start_makes_one_sandbox_and_no_pool_state(worker, smoke_lab, make_user, settings):
    from labs.redis import sync_redis
    from sandbox.relay import streams

    assert settings.LAB_POOL == 0  # the default
    client = Client()
    client.force_login(make_user("t"))
    session = start_session(client)
    assert _containers(worker.host) == {session["id"]}
    assert not list(sync_redis().scan_iter(match=f"lab:pool:{worker.host}:*"))
    assert json.loads(sync_redis().get(streams.host_key(worker.host)))["pooled"] == 0


def test_pool_sandboxes_take_places_and_a_ready_one_of_the_lab_is_a_place_this_start_takes(smoke_lab, settings):
    """Placement by free places, from heartbeats as relays write them (no sandbox needed)."""
    from labs.exceptions import ServiceUnavailable
    from labs.redis import sync_redis
    from labs.selectors import hosts_alive
    from labs.services import _choose_host, _pool_flavour, host_drain
    from sandbox.pool import flavour_id, free_key
    from sandbox.relay import streams

    settings.LAB_HOST_WAIT = 0
    r = sync_redis()
    others = [h["host"] for h in hosts_alive()]
    a, b = f"placea{time.time_ns()}", f"placeb{time.time_ns()}"
    fl = _pool_flavour(smoke_lab)

    def beat(host: str, *, capacity: int, live: int, pooled: int) -> None:
        r.sadd(streams.HOSTS_SET, host)
        r.set(streams.host_key(host), json.dumps({"host": host, "capacity": capacity, "live": live, "pooled": pooled,
                                                  "ts": time.time(), "activity": {}}), ex=30)

    for host in others:
        host_drain(host=host)
    try:
        beat(a, capacity=10, live=6, pooled=6)  # 4 free
        beat(b, capacity=10, live=5, pooled=0)  # 5 free
        assert _choose_host(pool_flavour=fl) == b
        r.sadd(free_key(a, flavour_id(fl)), "1" * 20, "2" * 20)  # two ready of this lab on a: 6 free for it
        assert _choose_host(pool_flavour=fl) == a
        assert _choose_host() == b  # for another lab they are taken places
        beat(a, capacity=4, live=4, pooled=4)
        beat(b, capacity=4, live=4, pooled=0)
        r.delete(free_key(a, flavour_id(fl)))
        with pytest.raises(ServiceUnavailable):
            _choose_host(pool_flavour=fl)  # a host full of pool sandboxes of another lab is full
    finally:
        for host in others:
            host_drain(host=host, drained=False)
        for host in (a, b):
            r.srem(streams.HOSTS_SET, host)
            r.delete(streams.host_key(host), free_key(host, flavour_id(fl)))
