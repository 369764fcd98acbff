"""1. Sandbox ready: POST /api/sessions/ → the shell prompt on the WebSocket, against a
bare `runc run /bin/true` on an overlay root of the same image; and a burst of starts."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from bench.client import Browser
from bench.report import Figure, pct

PROMPT = b":~# "  # PS1 '\u@\h:\w\$ ' of lab/base, after the motd


def runc_true(cfg, image_ref: str, n: int) -> dict[str, list[float]]:
    """Bare `runc run` of /bin/true on an overlay root (create → exit → delete), in ms;
    also how long making the overlay snapshot itself takes. Each run is followed by the
    same with what a sandbox has now: its own uid range (allocated and released) and the
    layers idmapped into it ("…_ranges"), so the pair shows what that defence costs."""
    from sandbox.images.store import ImageStore
    from sandbox.runtime import Limits, sandbox_spec, write_spec
    from sandbox.snapshots import Layout, snapshot_create, snapshot_remove

    store = ImageStore(cfg.images_dir, uid_base=cfg.uid_base, id_count=cfg.id_count)
    image = store.resolve(image_ref)
    root = str(Path("/run/container-lab") / f"{cfg.host}-anchor")
    from sandbox.idmap import IdShift, userns_open
    from sandbox.uidranges import UidRanges

    out: dict[str, list[float]] = {k: [] for k in ("runc_run_true", "snapshot_create", "runc_run_true_ranges",
                                                    "snapshot_create_ranges", "userns_fork")}
    ranges = None
    if cfg.uid_ranges():
        # Steady state: ranges are reused once rested, with their user namespace pinned
        # (rest=0 here so that the runs reuse the ranges they warmed). A range's first
        # use forks its namespace: measured apart ("userns_fork").
        ranges = UidRanges(first=cfg.range_first, slots=cfg.ranges, count=cfg.id_count, rest=0)
        for _ in range(5):
            t0 = time.perf_counter()
            os.close(userns_open(IdShift(cfg.uid_base, cfg.range_first, cfg.id_count)))
            out["userns_fork"].append((time.perf_counter() - t0) * 1000)
    for i in range(n * 2 if ranges else n):
        own = bool(ranges) and i % 2 == 1
        suffix = "_ranges" if own else ""
        sid = f"anchor{i}"
        owner = f"{cfg.host}-anchor/{sid}"
        layout = Layout(cfg.data_dir / "bench" / sid)
        layout.root.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        uid = ranges.allocate(owner).base if own else cfg.uid_base
        snapshot_create(image=image, layout=layout, layers_root=cfg.images_dir / "layers", disk_mb=32, uid=uid,
                        stored_uid=cfg.uid_base, id_count=cfg.id_count, pins=ranges.pins if own else None)
        out["snapshot_create" + suffix].append((time.perf_counter() - t0) * 1000)
        try:
            spec = sandbox_spec(sid=sid, rootfs=layout.rootfs, views=layout.views, hostname="anchor", uid=uid,
                                id_count=cfg.id_count, cgroup_parent=cfg.cgroup_parent, limits=Limits(memory_mb=128, pids=64),
                                args=["/bin/true"], terminal=False)
            write_spec(layout.config, spec)
            t0 = time.perf_counter()
            proc = subprocess.run(["runc", "--root", root, "run", "--bundle", str(layout.root), sid],
                                  stdin=subprocess.DEVNULL, capture_output=True)
            out["runc_run_true" + suffix].append((time.perf_counter() - t0) * 1000)
            if proc.returncode != 0:
                raise RuntimeError(f"anchor runc run failed: {proc.stderr.decode()[-500:]}")
        finally:
            subprocess.run(["runc", "--root", root, "delete", "--force", sid], capture_output=True)
            snapshot_remove(layout=layout)
            if own:
                ranges.release(owner)
    try:
        Path(root).rmdir()
    except OSError:
        pass
    return out


def start_to_prompt(browser: Browser) -> tuple[float, str, dict]:
    """Start a session and read its terminal until the prompt; (ms, session id, phases)."""
    t0 = time.perf_counter()
    session = browser.start()
    t_api = time.perf_counter()
    term = browser.terminal(session["ws"])
    t_ws = time.perf_counter()
    try:
        term.expect(PROMPT, timeout=60)
        t1 = time.perf_counter()
    finally:
        term.close()
    return (t1 - t0) * 1000, session["id"], {"api_ms": (t_api - t0) * 1000, "ws_open_ms": (t_ws - t_api) * 1000}


def sequential(browser: Browser, n: int) -> tuple[list[float], list[float], dict]:
    """n start → prompt → stop cycles, one after the other; (ready ms, stop ms, phases)."""
    ready, stops, api, ws = [], [], [], []
    for _ in range(n):
        ms, sid, phases = start_to_prompt(browser)
        ready.append(ms)
        api.append(phases["api_ms"])
        ws.append(phases["ws_open_ms"])
        t0 = time.perf_counter()
        browser.stop(sid)
        stops.append((time.perf_counter() - t0) * 1000)
    return ready, stops, {"api_p50_ms": pct(api, 50), "ws_open_p50_ms": pct(ws, 50)}


def burst(browsers: list[Browser]) -> tuple[float, list[float]]:
    """Every browser starts at once; (starts per second until all ready, per-start ms)."""
    results: list[tuple[float, str] | Exception] = [None] * len(browsers)  # type: ignore[list-item]
    gate = threading.Barrier(len(browsers) + 1)

    def one(i: int) -> None:
        gate.wait()
        try:
            ms, sid, _ = start_to_prompt(browsers[i])
            results[i] = (ms, sid)
        except Exception as exc:  # reported after the others finish
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(browsers))]
    for t in threads:
        t.start()
    gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    failures = [r for r in results if isinstance(r, Exception)]
    for b, r in zip(browsers, results):
        if not isinstance(r, Exception):
            b.api("DELETE", f"/api/sessions/{r[1]}/")
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(browsers)} burst starts failed: {failures[0]}")
    for b, r in zip(browsers, results):
        b.stop(r[1])  # already asked: this waits until stopped
    return len(browsers) / elapsed, [r[0] for r in results]


def run(ctx) -> list[Figure]:
    """Section 1."""
    from labs.hostconfig import host_config

    cfg = host_config()
    n = ctx.args.n
    anchor = runc_true(cfg, "lab/base:latest", max(10, n))
    a50 = pct(anchor["runc_run_true"], 50)
    ctx.anchors["runc_run_true_p50_ms"] = a50
    start_to_prompt_warm = sequential(ctx.browser, 2)  # warm caches, imports, connections
    del start_to_prompt_warm
    ready, stops, phases = sequential(ctx.browser, n)
    sec = "1. Sandbox ready"
    figs = [
        Figure(sec, "start → prompt p50", pct(ready, 50), "ms", "runc run true p50", a50,
               target=("<=", 100), ratio_target=("<=", 100 / 24), ratio_note="100 ms / 24 ms", n=n,
               extra={"samples": ready, **phases}),
        Figure(sec, "start → prompt p99", pct(ready, 99), "ms", "runc run true p50", a50, n=n),
        Figure(sec, "overlay snapshot_create p50 (part of a start)", pct(anchor["snapshot_create"], 50), "ms",
               "runc run true p50", a50, n=len(anchor["snapshot_create"])),
        *([Figure(sec, "runc run true, own uid range + idmapped layers p50 (issue 13 item 2)",
                  pct(anchor["runc_run_true_ranges"], 50) + pct(anchor["snapshot_create_ranges"], 50)
                  - pct(anchor["snapshot_create"], 50), "ms", "runc run true p50", a50,
                  n=len(anchor["runc_run_true_ranges"]),
                  extra={"runc_run_true_ranges_p50_ms": pct(anchor["runc_run_true_ranges"], 50),
                         "snapshot_create_ranges_p50_ms": pct(anchor["snapshot_create_ranges"], 50),
                         "snapshot_create_shared_p50_ms": pct(anchor["snapshot_create"], 50),
                         "first_use_of_a_range_userns_fork_p50_ms": pct(anchor["userns_fork"], 50),
                         "note": "runc run + the extra snapshot time of a range (allocate, pinned user namespace, "
                                 "one idmapped mount per layer), interleaved with the shared-range anchor; a "
                                 "range's first use also forks its user namespace (first_use_…)"}),
           Figure(sec, "first use of a uid range: fork its idmapping user namespace p50",
                  pct(anchor["userns_fork"], 50), "ms", "runc run true p50", a50, n=len(anchor["userns_fork"])),
           Figure(sec, "overlay snapshot_create with own uid range p50", pct(anchor["snapshot_create_ranges"], 50), "ms",
                  "snapshot_create shared range p50", pct(anchor["snapshot_create"], 50),
                  n=len(anchor["snapshot_create_ranges"]))] if anchor["runc_run_true_ranges"] else []),
        Figure(sec, "POST /api/sessions/ answer p50 (part of a start)", phases["api_p50_ms"], "ms", "runc run true p50", a50, n=n),
        Figure(sec, "stop (DELETE → stopped) p50", pct(stops, 50), "ms", "runc run true p50", a50, n=n),
    ]
    rate, per = burst(ctx.burst_browsers)
    figs.append(Figure(sec, f"burst: {len(per)} concurrent starts", rate, "starts/s", "sequential runc run true",
                       1000 / a50, target=(">=", 20), ratio_target=(">=", 20 / (1000 / 24)),
                       ratio_note="20/s vs 1/24 ms", n=len(per),
                       extra={"anchor_unit": "runs/s", "per_start_ms": per, "slowest_ms": max(per)}))
    return figs
