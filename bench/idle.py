"""6. (--idle K) K idle sandboxes, each with its terminal WebSocket open as a
trainee's tab would have it: memory per sandbox, and echo p99 on one of them."""
from __future__ import annotations

import concurrent.futures
import os
import time
from pathlib import Path

from bench.ready import PROMPT
from bench.report import Figure, pct
from bench.terminal import LabConn, echo_samples


def _rss_kb(pid: int | None) -> int:
    if not pid:
        return 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cgroup_usage(host: str) -> tuple[int, int]:
    """(sum of memory.usage_in_bytes of this host's sandboxes, how many cgroups)."""
    root = Path("/sys/fs/cgroup/memory/container-lab") / host
    total = count = 0
    for d in root.iterdir() if root.is_dir() else []:
        f = d / "memory.usage_in_bytes"
        if d.is_dir() and f.exists():
            total += int(f.read_text())
            count += 1
    return total, count


def _redis_used(url: str) -> int:
    import redis

    r = redis.Redis.from_url(url)
    try:
        return int(r.info("memory")["used_memory"])
    finally:
        r.close()


def run(ctx) -> list[Figure]:
    """Section 6."""
    k = ctx.args.idle
    env = ctx.env
    relay = env.relay_pid()
    before = {"relay": _rss_kb(relay), "web": _rss_kb(env.web.pid), "redis": _redis_used(os.environ["REDIS_URL"])}
    browsers = ctx.make_browsers(k, prefix="idle")
    terms: list = [None] * k
    sids: list = [None] * k

    def start(i: int) -> None:
        session = browsers[i].start()
        sids[i] = session["id"]
        term = browsers[i].terminal(session["ws"])
        term.expect(PROMPT, timeout=120)
        terms[i] = term

    t0 = time.perf_counter()
    errors = []
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for fut in [pool.submit(start, i) for i in range(k)]:
                try:
                    fut.result()
                except Exception as exc:  # counted; the figure says how many came up
                    errors.append(exc)
        start_s = time.perf_counter() - t0
        live = [t for t in terms if t is not None]
        time.sleep(3)  # let page cache and heartbeats settle before reading memory
        cg_bytes, cg_count = cgroup_usage(env.host)
        after = {"relay": _rss_kb(relay), "web": _rss_kb(env.web.pid), "redis": _redis_used(os.environ["REDIS_URL"])}
        relay_delta = (after["relay"] - before["relay"]) * 1024
        # The others idle (their WebSockets open, nothing typed) while one types.
        probe = LabConn(live[0])
        echo_samples(probe, 20)
        samples = echo_samples(probe, ctx.args.keys)
    finally:
        for t in terms:
            if t is not None:
                try:
                    t.close()
                except Exception:
                    pass
        for b, sid in zip(browsers, sids):
            if sid:
                try:
                    b.api("DELETE", f"/api/sessions/{sid}/")
                except Exception:
                    pass
        for b, sid in zip(browsers, sids):
            if sid:
                try:
                    b.stop(sid, timeout=120)
                except Exception:
                    pass
    n = len(live)
    sec = f"6. {k} idle sandboxes (each with its WebSocket open)"
    per = (cg_bytes + relay_delta) / max(1, n) / (1 << 20)
    return [
        Figure(sec, f"sandboxes up ({len(errors)} failed)", n, "", "", None, n=k,
               extra={"start_all_s": start_s, "errors": [str(e) for e in errors[:5]]}),
        Figure(sec, "memory per sandbox (cgroup + relay RSS delta)", per, "MiB", "", None, n=n,
               extra={"cgroup_bytes": cg_bytes, "cgroups": cg_count, "relay_rss_delta": relay_delta,
                      "web_rss_delta": (after["web"] - before["web"]) * 1024,
                      "redis_used_delta": after["redis"] - before["redis"]}),
        Figure(sec, "web (uvicorn) RSS per open terminal", (after["web"] - before["web"]) / 1024 / max(1, n), "MiB",
               "", None, n=n),
        Figure(sec, "echo p99 on one while the others idle", pct(samples, 99), "ms", "echo p99, no idle load",
               ctx.anchors.get("lab_echo_p99_ms"), target=("<=", 50), n=len(samples),
               extra={"p50": pct(samples, 50)}),
    ]
