"""`./lab bench` — the project's benchmark, against the real stack, as ratios in one run.

    python -m bench                    # sections ready,flat,build,echo,output,survive,inside (~13 min)
    python -m bench --quick            # small N, a smoke run (~2 min)
    python -m bench --only echo,output
    python -m bench --only dashboard     # 500 trainees × 10 steps, 50 events/s, one dashboard (~1 min)
    python -m bench --idle 200         # also 200 idle sandboxes (heavy; off by default)
    python -m bench --only class       # a class of 100 pressing Start at once, pool off/on (heavy)

Sets up its own private Redis, data dir and SQLite database, one worker host (Celery
+ relay) and uvicorn; writes bench-results/<timestamp>.json and .md and prints the
Markdown table. See docs/benchmark.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

SECTIONS = ("ready", "flat", "build", "echo", "output", "survive", "inside", "dashboard", "idle", "class")
HEAVY = ("idle", "class")  # run only when asked for
ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="lab bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small N: a smoke run of every section in ~2 minutes")
    p.add_argument("--only", default="", help=f"comma-separated sections: {','.join(SECTIONS)}")
    p.add_argument("-n", type=int, default=None, help="start/stop cycles for ready and flat (default 30, quick 5)")
    p.add_argument("--keys", type=int, default=None, help="keystrokes for echo latency (default 500, quick 100)")
    p.add_argument("--burst", type=int, default=20, help="concurrent starts in the burst (default 20)")
    p.add_argument("--idle", type=int, default=0, nargs="?", const=200,
                   help="also start K idle sandboxes (default K 200 when given without a number)")
    p.add_argument("--class-size", dest="classroom", type=int, default=None,
                   help="trainees of the class section (default 100, quick 20)")
    p.add_argument("--concurrency", type=int, default=int(os.environ.get("LAB_WORKER_CONCURRENCY", 4)),
                   help="Celery worker processes, as `./lab up` (default 4)")
    p.add_argument("--out", type=Path, default=ROOT / "bench-results", help="results directory")
    p.add_argument("--keep", action="store_true", help="keep the data dir (logs) after the run")
    args = p.parse_args(argv)
    args.n = args.n or (5 if args.quick else 30)
    args.keys = args.keys or (100 if args.quick else 500)
    if args.quick:
        args.burst = min(args.burst, 10)
    args.classroom = args.classroom or (20 if args.quick else 100)
    wanted = [s for s in args.only.split(",") if s] or [s for s in SECTIONS if s not in HEAVY or (s == "idle" and args.idle)]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    if "idle" in wanted and not args.idle:
        args.idle = 50 if args.quick else 200
    args.sections = [s for s in SECTIONS if s in wanted]
    return args


@dataclass
class Context:
    """What the sections share: the environment, a signed-in browser, anchors, caches."""

    args: argparse.Namespace
    env: object
    browser: object = None
    burst_browsers: list = field(default_factory=list)
    anchors: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)
    _terminado: object = None

    def terminado(self):
        """One terminado server for the run (started on first use)."""
        if self._terminado is None:
            from bench.baselines import TerminadoServer

            self._terminado = TerminadoServer()
        return self._terminado

    def make_browsers(self, count: int, *, prefix: str) -> list:
        """count users, each with a Django session made directly (the login form is
        timed only once, by the main browser) and a browser holding its cookie."""
        from importlib import import_module

        from django.conf import settings
        from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

        from bench.client import Browser

        engine = import_module(settings.SESSION_ENGINE)
        out = []
        for i in range(count):
            user = self.env.make_user(f"{prefix}{i}")
            store = engine.SessionStore()
            store[SESSION_KEY] = user._meta.pk.value_to_string(user)
            store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
            store[HASH_SESSION_KEY] = user.get_session_auth_hash()
            store.save()
            b = Browser(self.env.web_url)
            b.adopt_session(store.session_key)
            out.append(b)
        return out

    def close(self) -> None:
        if self._terminado is not None:
            self._terminado.stop()
        for b in [self.browser, *self.burst_browsers]:
            if b is not None:
                b.close()


def _machine() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    return f"{os.cpu_count()} × {cpu}, {mem_gib:.0f} GiB, Linux {platform.release()}"


def _sigterm(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("lab bench: run as root (sandboxes need runc, mounts and cgroups)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    signal.signal(signal.SIGTERM, _sigterm)
    from bench.env import Env

    started = dt.datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    t_start = time.monotonic()
    env = Env.create()  # before Django reads its settings
    import django

    django.setup()
    ctx = Context(args=args, env=env)
    figures, notes, cleanup, failed = [], [], {}, False
    say = lambda msg: print(f"[{time.monotonic() - t_start:6.1f} s] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        say(f"data dir {env.data_dir}, host {env.host}: migrate, build lab/base, import smoke lab")
        env.prepare()
        env.make_user("bench")
        env.start_worker(args.concurrency)
        env.start_web()
        from bench.client import Browser

        ctx.browser = Browser(env.web_url)
        ctx.browser.login("bench")
        if "ready" in args.sections:
            ctx.burst_browsers = ctx.make_browsers(args.burst, prefix="burst")
        from bench import classroom, dashboard, idle, images, inside, ready, survive, terminal

        runners = {"ready": ready.run, "flat": images.flatness, "build": images.build_and_import,
                   "echo": terminal.run_echo, "output": terminal.run_output, "survive": survive.run, "inside": inside.run, "dashboard": dashboard.run,
                   "idle": idle.run, "class": classroom.run}
        for name in args.sections:
            say(f"section {name}")
            t0 = time.monotonic()
            try:
                figures += runners[name](ctx)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # one broken section must not lose the others
                failed = True
                notes.append(f"section {name} failed: {type(exc).__name__}: {exc}")
                traceback.print_exc()
            notes.append(f"section {name}: {time.monotonic() - t0:.0f} s")
    except KeyboardInterrupt as exc:
        failed = True
        notes.append(f"interrupted: {exc}")
    finally:
        say("cleanup: stop web, worker, host (its relay removes every sandbox), redis; check mounts")
        ctx.close()
        cleanup = env.stop(keep=args.keep or failed)
    if cleanup["mounts_left"] or cleanup["containers_left"]:
        failed = True
        notes.append(f"LEFT BEHIND: mounts {cleanup['mounts_left'][:5]}, containers {cleanup['containers_left'][:5]}")
    if not cleanup["data_dir_removed"]:
        notes.append(f"data dir kept: {cleanup['data_dir']} (worker.log, web.log)")
    meta = {"started": started, "runtime_s": time.monotonic() - t_start, "machine": _machine(),
            "argv": " ".join(argv), "sections": args.sections, "anchors": ctx.anchors, "cleanup": cleanup,
            "notes": notes, "nproc": os.cpu_count(), "kernel": platform.release()}
    from bench.report import write

    jpath, mpath, md = write(figures, meta, args.out)
    print(md)
    print(f"wrote {jpath} and {mpath}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
