"""8. Inside the container (docs/inside.md): checkpoint time against the container layer's
size, next to GNU tar of the same upperdir; rewind → prompt against a fresh start → prompt;
and the host CPU the inside panel costs while open and while closed."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from bench.client import Browser, Terminal
from bench.ready import PROMPT, start_to_prompt
from bench.report import Figure, pct

SIZES_MIB = (0, 1, 4, 16)  # the smoke lab's container layer holds 32 MiB
CPU_WINDOW = 10.0


def _exec(cfg, sid: str, script: str) -> None:
    from sandbox.service import sandbox_exec

    res = sandbox_exec(cfg, sid, script, timeout=60)
    if res.exit_code != 0:
        raise RuntimeError(f"{script!r} exited {res.exit_code}: {res.output[-300:]}")


def _tar_ms(upper: Path, scratch: Path) -> float:
    """GNU tar of the upperdir to a file: the work a checkpoint cannot avoid."""
    out = scratch / "anchor.tar"
    t0 = time.perf_counter()
    subprocess.run(["tar", "--numeric-owner", "-C", str(upper), "-cf", str(out), "."], check=True, capture_output=True)
    ms = (time.perf_counter() - t0) * 1000
    out.unlink()
    return ms


def checkpoints(browser: Browser, cfg, rounds: int) -> tuple[dict[int, list[float]], dict[int, list[float]]]:
    """(checkpoint ms, tar ms) per container-layer size in MiB; a session per size, so
    its checkpoints go with it (the per-user quota)."""
    from sandbox.service import layout_for

    took: dict[int, list[float]] = {}
    tars: dict[int, list[float]] = {}
    for mib in SIZES_MIB:
        session = browser.start()
        sid = session["id"]
        term = browser.terminal(session["ws"])
        try:
            term.expect(PROMPT, timeout=60)
            upper = layout_for(cfg, sid).upper
            _exec(cfg, sid, f"[ {mib} -eq 0 ] || head -c {mib}m /dev/urandom > /big")
            for i in range(rounds):
                _exec(cfg, sid, f"echo {mib}-{i} > /etc/round")  # a new layer each time, never a cache hit
                t0 = time.perf_counter()
                status, body = browser.api("POST", f"/api/sessions/{sid}/checkpoints", {})
                took.setdefault(mib, []).append((time.perf_counter() - t0) * 1000)
                if status != 201:
                    raise RuntimeError(f"checkpoint: HTTP {status} {body}")
                tars.setdefault(mib, []).append(_tar_ms(upper, cfg.data_dir))
        finally:
            term.close()
            browser.stop(sid)
    return took, tars


def rewinds(browser: Browser, other: Browser, rounds: int) -> tuple[list[float], list[float]]:
    """(rewind → prompt ms, fresh start → prompt ms), interleaved round by round so that
    both see the same load on a shared machine (the fresh starts are another user's: a
    user has one live session per lab)."""
    fresh = []
    session = browser.start()
    sid = session["id"]
    term = browser.terminal(session["ws"])
    back = []
    try:
        term.expect(PROMPT, timeout=60)
        status, cp = browser.api("POST", f"/api/sessions/{sid}/checkpoints", {})
        if status != 201:
            raise RuntimeError(f"checkpoint: HTTP {status} {cp}")
        for _ in range(rounds):
            ms, other_sid, _ = start_to_prompt(other)
            fresh.append(ms)
            other.stop(other_sid)
            mark = len(term.out)
            t0 = time.perf_counter()
            status, body = browser.api("POST", f"/api/sessions/{sid}/rewind", {"checkpoint": cp["id"]})
            if status != 202:
                raise RuntimeError(f"rewind: HTTP {status} {body}")
            term.expect(PROMPT, timeout=60, start=mark)
            back.append((time.perf_counter() - t0) * 1000)
            _wait_ready(browser, sid)
    finally:
        term.close()
        browser.stop(sid)
    return back, fresh


def _wait_ready(browser: Browser, sid: str) -> None:
    deadline = time.monotonic() + 30
    while browser.api("GET", f"/api/sessions/{sid}/")[1].get("state") != "ready":
        if time.monotonic() > deadline:
            raise TimeoutError("not ready after the rewind")
        time.sleep(0.02)


def _tree_cpu_s(pids: list[int]) -> float:
    """utime + stime of these processes and all their descendants, in seconds."""
    children: dict[int, list[int]] = {}
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                rest = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(rest[1]), (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK"))
            children.setdefault(int(rest[1]), []).append(int(entry.name))
    total, todo = 0.0, list(pids)
    while todo:
        pid = todo.pop()
        total += stats.get(pid, (0, 0.0))[1]
        todo += children.get(pid, [])
    return total


def panel_cpu(browser: Browser, env) -> tuple[float, float]:
    """Web + worker CPU (percent of one core) over CPU_WINDOW with a terminal open: without
    and with an inside subscription on it."""
    session = browser.start()
    sid = session["id"]
    term: Terminal = browser.terminal(session["ws"])
    pids = [env.worker.pid, env.web.pid]
    out = []
    try:
        term.expect(PROMPT, timeout=60)
        for subscribe in (False, True):
            if subscribe:
                term.ws.send(json.dumps({"type": "inside.subscribe", "views": ["layers", "changes", "container"]}))
            c0, t0 = _tree_cpu_s(pids), time.monotonic()
            while time.monotonic() - t0 < CPU_WINDOW:
                try:
                    term.recv_once(0.2)
                except TimeoutError:
                    pass
            out.append((_tree_cpu_s(pids) - c0) / (time.monotonic() - t0) * 100)
        if not any(c.get("type") == "inside" for c in term.control):
            raise RuntimeError("the subscribed socket got no inside message")
    finally:
        term.close()
        browser.stop(sid)
    return out[0], out[1]


def run(ctx) -> list[Figure]:
    """Section 8."""
    from labs.hostconfig import host_config

    rounds = 3 if ctx.args.quick else 8
    cfg = host_config()
    took, tars = checkpoints(ctx.browser, cfg, rounds)
    (other,) = ctx.make_browsers(1, prefix="fresh")
    try:
        back, fresh = rewinds(ctx.browser, other, rounds)
    finally:
        other.close()
    closed, opened = panel_cpu(ctx.browser, ctx.env)
    sec = "8. Inside the container: checkpoint, rewind, panel"
    figures = [Figure(sec, f"checkpoint, {mib} MiB container layer (p50)", pct(took[mib], 50), "ms",
                      "GNU tar of the same upperdir", pct(tars[mib], 50), n=len(took[mib]),
                      extra={"samples": took[mib], "tar_samples": tars[mib]}) for mib in SIZES_MIB]
    figures += [
        Figure(sec, "rewind → prompt (p50)", pct(back, 50), "ms", "fresh start → prompt p50", pct(fresh, 50),
               n=len(back), ratio_target=("<=", 1.0), ratio_note="issue 17: as fast as a fresh sandbox",
               extra={"samples": back, "fresh_samples": fresh}),
        Figure(sec, "web + worker CPU, one terminal, panel open", opened, "% of a core",
               "same, panel closed", closed, n=1, extra={"window_s": CPU_WINDOW}),
    ]
    return figures
