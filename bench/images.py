"""2. Start time flat in image size; 3. build time per layer and docker-archive import.

The big images are built here with a recipe `copy:` step of generated random files
(random so that nothing is trivially small on disk) and kept in the run's data dir,
so the flatness and import measurements reuse them.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from bench.report import Figure, pct

MiB = 1 << 20


def _random_tree(dest: Path, total_mb: int, file_mb: int = 10) -> None:
    """total_mb of random bytes in file_mb files (plus a few small ones)."""
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(max(1, total_mb // file_mb)):
        with open(dest / f"blob{i:03d}.bin", "wb") as f:
            for _ in range(file_mb):
                f.write(os.urandom(MiB))
    for i in range(20):
        (dest / f"small{i}.txt").write_text(secrets.token_hex(64) + "\n")


def _recipe(path: Path, tag: str, steps: list[str], base: str = "lab/base:latest") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"tag: {tag}\nfrom: {base}\nsteps:\n" + "".join(f"  - {s}\n" for s in steps))
    return path


def build_timed(env, recipe: Path) -> tuple[float, object]:
    """Build a recipe into the host's store; (seconds, image)."""
    from sandbox.images.recipes import build

    t0 = time.perf_counter()
    image = build(recipe, env.store())
    return time.perf_counter() - t0, image


def big_image(ctx, size_mb: int, tag: str) -> tuple[object, float]:
    """An image of lab/base plus one copy layer of size_mb random data; (image, build s)."""
    key = ("image", tag)
    if key not in ctx.cache:
        work = ctx.env.data_dir / "bench" / f"img-{size_mb}"
        _random_tree(work / "data", size_mb)
        secs, image = build_timed(ctx.env, _recipe(work / "recipe.yaml", tag, ["copy: {src: data/, dest: /opt/data}"]))
        ctx.cache[key] = (image, secs)
    return ctx.cache[key]


def engine_start_ms(cfg, image_ref: str, sid: str) -> float:
    """sandbox.service.sandbox_start until the relay holds the PTY, in ms; then stop."""
    from sandbox.runtime import Limits
    from sandbox.service import SandboxRequest, sandbox_start, sandbox_stop

    req = SandboxRequest(sid=sid, image=image_ref, hostname="flat", limits=Limits(memory_mb=128, pids=64, disk_mb=32))
    t0 = time.perf_counter()
    try:
        sandbox_start(cfg, req)
        return (time.perf_counter() - t0) * 1000
    finally:
        sandbox_stop(cfg, sid)


def flatness(ctx) -> list[Figure]:
    """Section 2: engine-level start of lab/base vs a ~300 MB image, interleaved."""
    from labs.hostconfig import host_config

    cfg = host_config()
    size = 60 if ctx.args.quick else 300
    big, build_s = big_image(ctx, size, f"bench/big{size}:latest")
    ctx.cache["big_build_s"] = (size, build_s)
    small_ms, big_ms = [], []
    n = max(5, ctx.args.n)
    for i in range(n + 2):
        s = engine_start_ms(cfg, "lab/base:latest", f"flatsmall{i}")
        b = engine_start_ms(cfg, big.ref, f"flatbig{i}")
        if i >= 2:  # the first two warm the page cache and the relay
            small_ms.append(s)
            big_ms.append(b)
    sec = "2. Start time vs image size (engine: sandbox_start → relay holds the PTY)"
    base_p50 = pct(small_ms, 50)
    return [
        Figure(sec, "lab/base (~2 MB) p50", base_p50, "ms", "runc run true p50", ctx.anchors.get("runc_run_true_p50_ms"),
               n=n, extra={"samples": small_ms}),
        Figure(sec, f"{size} MB image p50", pct(big_ms, 50), "ms", "lab/base p50", base_p50,
               ratio_target=("<=", 1.2), ratio_note="flat: within 20 %", n=n, extra={"samples": big_ms}),
    ]


def _floor_copy_layer(src: Path, work: Path) -> float:
    """What a copy layer must at least do, with coreutils: copy, tar, hash, unpack (s)."""
    work.mkdir(parents=True)
    t0 = time.perf_counter()
    subprocess.run(["cp", "-a", str(src), str(work / "staged")], check=True)
    subprocess.run(["tar", "-cf", str(work / "layer.tar"), "-C", str(work / "staged"), "."], check=True)
    subprocess.run(["sha256sum", str(work / "layer.tar")], check=True, capture_output=True)
    (work / "diff").mkdir()
    subprocess.run(["tar", "-xf", str(work / "layer.tar"), "-C", str(work / "diff")], check=True)
    secs = time.perf_counter() - t0
    shutil.rmtree(work)
    return secs


def build_and_import(ctx) -> list[Figure]:
    """Section 3: seconds per copy layer and per run layer; docker-archive import MB/s."""
    from sandbox.images.oci import export_image, import_image

    env, quick = ctx.env, ctx.args.quick
    work = env.data_dir / "bench" / "build"
    layers = 3 if quick else 10
    for i in range(layers):
        _random_tree(work / f"c{i}", 1, 1)
    copy_s, _ = build_timed(env, _recipe(work / "copy.yaml", "bench/copy:latest",
                                         [f"copy: {{src: c{i}/, dest: /opt/c{i}}}" for i in range(layers)]))
    floor_s = _floor_copy_layer(work / "c0", work / "floor")
    runs = 2 if quick else 5
    run_s, _ = build_timed(env, _recipe(work / "run.yaml", "bench/run:latest",
                                        [f'run: "echo {secrets.token_hex(4)} > /etc/step{i}"' for i in range(runs)]))
    sec = "3. Image build and import"
    anchor_run = ctx.anchors.get("runc_run_true_p50_ms")
    figs = [
        Figure(sec, f"copy step (1 MB of files), per layer, {layers} layers", copy_s / layers * 1000, "ms",
               "cp+tar+sha256sum+untar", floor_s * 1000, n=layers),
        Figure(sec, f"run step (echo > file), per layer, {runs} layers", run_s / runs * 1000, "ms",
               "runc run true p50", anchor_run, n=runs),
    ]
    size, big_s = ctx.cache.get("big_build_s", (None, None))
    if size:
        figs.append(Figure(sec, f"copy step of {size} MB (one layer)", size / big_s, "MB/s", "", None, n=1,
                           extra={"seconds": big_s}))
    mid_mb = 30 if quick else 100
    mid, _ = big_image(ctx, mid_mb, f"bench/mid{mid_mb}:latest")
    archive = env.data_dir / "bench" / "mid-docker.tar"
    t0 = time.perf_counter()
    export_image(mid, env.store(), archive, fmt="docker")
    export_s = time.perf_counter() - t0
    archive_mb = archive.stat().st_size / MiB
    t0 = time.perf_counter()
    import_image(archive, env.store(env.data_dir / "bench" / "import-store"), tag="bench/imported:latest")
    import_s = time.perf_counter() - t0
    untar = env.data_dir / "bench" / "untar"
    untar.mkdir()
    t0 = time.perf_counter()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(untar)], check=True)
    for layer_tar in untar.rglob("layer.tar"):
        d = layer_tar.parent / "x"
        d.mkdir()
        subprocess.run(["tar", "-xf", str(layer_tar), "-C", str(d)], check=True)
    untar_s = time.perf_counter() - t0
    shutil.rmtree(untar)
    figs += [
        Figure(sec, f"import of a {archive_mb:.0f} MB docker-save archive", archive_mb / import_s, "MB/s",
               "GNU tar: archive + its layers", archive_mb / untar_s, n=1, extra={"seconds": import_s}),
        Figure(sec, f"export (fmt=docker) of the same {archive_mb:.0f} MB", archive_mb / export_s, "MB/s",
               "", None, n=1, extra={"seconds": export_s}),
    ]
    return figs
