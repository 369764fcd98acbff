"""7. (--only class) A class at once: K distinct trainees POST Start within one second
through the real web server, each then opens its terminal WebSocket; start → prompt
p50, p99 and the last prompt, with the warm pool off and on, against sequential bare
`runc run` in the same run.

Three bursts: the pool off (the worker and web as `./lab up` runs them by default);
then the pool on (LAB_POOL=K) with an empty pool — the first class of the day, whose
starts are the demand the pool sizes itself by — and, once the pool has refilled, the
same class again (the measured figure of the pool).
"""
from __future__ import annotations

import os
import threading
import time

from bench.client import Browser
from bench.ready import PROMPT, runc_true
from bench.report import Figure, pct
from bench.env import wait_for


def _one(browser: Browser, offset: float, t0: float, out: dict) -> None:
    """One trainee: wait for its moment in the second, POST Start, open the terminal,
    read until the prompt (and on until the state is ready)."""
    time.sleep(max(0.0, t0 + offset - time.perf_counter()))
    t_post = time.perf_counter()
    session = browser.start()
    out["sid"] = session["id"]
    out["api"] = time.perf_counter() - t_post
    term = browser.terminal(session["ws"])
    try:
        term.expect(PROMPT, timeout=120)
        out["prompt"] = time.perf_counter() - t_post
        out["prompt_at"] = time.perf_counter() - t0

        def ready() -> bool:
            return any(c.get("state") == "ready" for c in term.control)

        while not ready():
            term.recv_once(60)
        out["ready"] = time.perf_counter() - t_post
    finally:
        term.close()


def burst(browsers: list[Browser]) -> dict:
    """Every browser starts within one second (evenly spread); per-trainee times in s."""
    k = len(browsers)
    results = [dict() for _ in range(k)]
    errors: list[Exception] = []
    gate = threading.Barrier(k + 1)
    holder = {}

    def run(i: int) -> None:
        gate.wait()
        try:
            _one(browsers[i], i / k, holder["t0"], results[i])
        except Exception as exc:  # counted and reported after the others finish
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    holder["t0"] = time.perf_counter() + 0.05
    gate.wait()
    for t in threads:
        t.join()
    sids = [(b, r["sid"]) for b, r in zip(browsers, results) if "sid" in r]
    if errors and not sids:
        raise RuntimeError(f"every start of the burst failed: {errors[0]!r}")
    for b, sid in sids:
        b.api("DELETE", f"/api/sessions/{sid}/")
    for b, sid in sids:
        b.stop(sid, timeout=120)
    done = [r for r in results if "ready" in r]
    return {"prompt": [r["prompt"] for r in done], "ready": [r["ready"] for r in done],
            "api": [r["api"] for r in done], "last": max((r["prompt_at"] for r in done), default=float("nan")),
            "errors": [repr(e) for e in errors[:5]], "failed": len(errors), "created": len(sids)}


def _restart(env, browsers: list[Browser], **extra: str) -> None:
    """Worker and web again, with extra environment (the relay and its host run on);
    the browsers follow the web to its new port."""
    import http.client
    import urllib.parse

    env._stop(env.web, 20)
    env._stop(env.worker, 60)
    os.environ.update(extra)
    env.start_celery()
    env.start_web()
    for b in browsers:
        b.conn.close()
        b.base, b.netloc = env.web_url, urllib.parse.urlsplit(env.web_url).netloc
        b.conn = http.client.HTTPConnection(b.netloc, timeout=60)


def _pool_ready(host: str) -> int:
    import redis

    r = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        return sum(r.scard(k) for k in r.scan_iter(match=f"lab:pool:{host}:free:*"))
    finally:
        r.close()


def run(ctx) -> list[Figure]:
    """Section 7."""
    from labs.hostconfig import host_config

    k = ctx.args.classroom
    env = ctx.env
    anchor = runc_true(host_config(), "lab/base:latest", max(10, ctx.args.n))["runc_run_true"]
    a50 = pct(anchor, 50)
    ctx.anchors.setdefault("runc_run_true_p50_ms", a50)
    seq_s = k * a50 / 1000  # K sandboxes run one after the other with bare runc
    browsers = ctx.make_browsers(k, prefix="class")
    ctx.burst_browsers += browsers
    runs = {"off": burst(browsers)}
    everyone = [ctx.browser, *ctx.burst_browsers]
    _restart(env, everyone, LAB_POOL=str(k))
    try:
        runs["cold"] = burst(browsers)
        fill_t0 = time.perf_counter()
        # The pool sizes itself by the starts it saw: those of the first class that the
        # web accepted (a refused POST is no demand).
        target = runs["cold"]["created"]
        wait_for(lambda: _pool_ready(env.host) >= target, timeout=300, what=f"a warm pool of {target}")
        fill_s = time.perf_counter() - fill_t0
        runs["warm"] = burst(browsers)
    finally:
        _restart(env, everyone, LAB_POOL="0")  # the other sections measure the default
    sec = f"7. A class at once: {k} trainees press Start within one second"
    figs = []
    for key, label in (("off", "pool off"), ("cold", "pool on, empty (first class)"), ("warm", "pool on, warm")):
        r = runs[key]
        measured = key == "warm"
        n = len(r["prompt"])
        extra = {"failed": r["failed"], "errors": r["errors"], "ready_p50_s": pct(r["ready"], 50),
                 "ready_p99_s": pct(r["ready"], 99), "api_p50_s": pct(r["api"], 50), "api_p99_s": pct(r["api"], 99),
                 "samples_prompt_s": r["prompt"]}
        figs += [
            Figure(sec, f"{label}: start → prompt p50 ({r['failed']} failed)", pct(r["prompt"], 50) * 1000, "ms",
                   "runc run true p50", a50, target=("<=", 500) if measured else None,
                   ratio_target=("<=", 500 / 24) if measured else None, ratio_note="500 ms / 24 ms", n=n, extra=extra),
            Figure(sec, f"{label}: start → prompt p99", pct(r["prompt"], 99) * 1000, "ms", "runc run true p50", a50, n=n),
            Figure(sec, f"{label}: start → state ready p50", pct(r["ready"], 50) * 1000, "ms", "runc run true p50", a50, n=n),
            Figure(sec, f"{label}: last prompt, from the first POST", r["last"], "s",
                   f"{k} sequential runc run true", seq_s, target=("<=", 3) if measured else None,
                   ratio_target=("<=", 3 / (k * 0.024)) if measured else None,
                   ratio_note=f"3 s / {k} × 24 ms", n=n),
        ]
    figs.append(Figure(sec, f"pool refill to {target} after the first class", fill_s, "s",
                       f"{target} sequential runc run true", target * a50 / 1000, n=target))
    return figs
