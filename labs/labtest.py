"""`labs test`: prove every step of a lab in a fresh sandbox.

For each lab: a new sandbox, the lab's setup, then for every step with a check:
step setup → check must FAIL → solution → check must PASS. Then every wrong answer a
step lists (`wrong:`) runs in a fresh sandbox brought to that step (lab setup, each
earlier step's setup and solution, this step's setup), and the check must still FAIL.
The sandbox is the real one trainees get (same image, limits, runc profile), run by a
private relay.

It runs on its own or beside `./lab up`: it uses the configured Redis when that answers
and starts a private one when it does not; its relay is always its own, and takes no
trainee's session (it announces no free places).
"""
from __future__ import annotations

import os
import signal
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

from labs.labfile import LabSpec
from sandbox.config import HostConfig
from sandbox.relay.client import relay_call
from sandbox.relay.spawn import die_with_parent
from sandbox.runtime import Limits
from sandbox.service import SandboxRequest, sandbox_exec, sandbox_start, sandbox_stop

ROOT = Path(__file__).resolve().parent.parent
WRONG_ANSWER_WORKERS = int(os.environ.get("LAB_TEST_WORKERS", "2"))
_LIFECYCLE = threading.Lock()


@dataclass(frozen=True)
class StepOutcome:
    """One row of the `labs test` table."""

    lab: str
    step: str
    ok: bool
    detail: str
    seconds: float


class LabTestError(Exception):
    """`labs test` cannot run: the message says what is missing and how to fix it."""


def lab_dirs(names: list[str], *, every: bool, builtin: Path) -> list[Path]:
    """Lab directories to test: paths as given; slugs of labs in the database (uploaded
    ones live under LAB_DATA_DIR/labs) or under labs/builtin; with every, all of both."""
    from django.conf import settings
    from django.db import DatabaseError

    from labs.models import Lab

    def imported() -> dict[str, Path]:
        try:
            return {slug: Path(source) for slug, source in Lab.objects.values_list("slug", "source")
                    if source and (Path(source) / "lab.yaml").is_file()}
        except DatabaseError:  # no database yet: only paths and built-in labs
            return {}

    if every:
        uploads = (Path(settings.LAB_DATA_DIR) / "labs").resolve()
        return [builtin, *sorted(p for p in imported().values() if uploads in p.resolve().parents)]
    known, dirs = imported(), []
    for name in names:
        if Path(name).exists():
            dirs.append(Path(name))
        elif name in known:
            dirs.append(known[name])
        elif (builtin / name).is_dir():
            dirs.append(builtin / name)
        else:
            raise LabTestError(f"no lab {name!r}: not a directory, not a lab of this site, not under {builtin}")
    return dirs


def redis_answers(url: str) -> bool:
    """The Redis server at url answers PING (within a second)."""
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


@contextmanager
def private_redis(data_dir: Path) -> Iterator[str]:
    """A redis-server of its own on a free loopback port, no persistence; yields its URL."""
    if not shutil.which("redis-server"):
        raise LabTestError("Redis does not answer and redis-server is not installed: apt-get install redis-server, "
                           "or set REDIS_URL to a running one")
    work = Path(tempfile.mkdtemp(prefix=".labtest-redis-", dir=data_dir))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(work), "--loglevel", "warning"], stdout=subprocess.DEVNULL, preexec_fn=die_with_parent)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not redis_answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LabTestError(f"the private redis-server did not start (exit status {proc.poll()})")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def labtest_host(cfg: HostConfig, *, say: Callable[[str], None] = lambda text: None) -> Iterator[HostConfig]:
    """What `labs test` needs to run sandboxes, whether or not `./lab up` is running."""
    from django.db import DatabaseError, connection

    from labs.models import Session

    try:
        migrated = Session._meta.db_table in connection.introspection.table_names()
    except DatabaseError:  # e.g. SQLite's file cannot be opened
        migrated = False
    if not migrated:
        raise LabTestError("the database is not set up: run `./lab up` once, or `manage.py migrate`")
    with ExitStack() as stack:
        if not redis_answers(cfg.redis_url):
            say(f"Redis at {cfg.redis_url} does not answer: starting a private one for this test")
            cfg = replace(cfg, redis_url=stack.enter_context(private_redis(cfg.data_dir)))
        yield stack.enter_context(private_relay(cfg))


@contextmanager
def private_relay(cfg: HostConfig) -> Iterator[HostConfig]:
    """A relay of its own (a throwaway host name) for the duration of the test. It
    announces capacity 0, so the web never sends a trainee's sandbox to it."""
    test_cfg = replace(cfg, host=f"labtest{os.getpid()}", capacity=0)
    env = dict(os.environ, LAB_HOST_NAME=test_cfg.host, REDIS_URL=test_cfg.redis_url, LAB_HOST_CAPACITY="0")
    proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "relay"], env=env,
                            preexec_fn=die_with_parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                relay_call(test_cfg, "ping", timeout=1)
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the test relay did not start: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
                time.sleep(0.05)
        yield test_cfg
    finally:
        proc.send_signal(signal.SIGUSR1)  # drain: its sandboxes go with it
        proc.wait(30)
        _forget_queue(test_cfg)


def _forget_queue(cfg: HostConfig) -> None:
    """Drop the throwaway host's Celery queue (sandbox-exited notices nobody consumes)."""
    import redis

    try:
        redis.Redis.from_url(cfg.redis_url, socket_connect_timeout=1, socket_timeout=1).delete(cfg.queue)
    except (redis.RedisError, OSError):
        pass


@contextmanager
def fresh_sandbox(cfg: HostConfig, spec: LabSpec) -> Iterator[str]:
    """A new sandbox for this lab (its image and limits); stopped afterwards whatever happens."""
    sid = secrets.token_hex(8)
    # Starts and stops one at a time: `runc list` (in sandbox_start) trips over a container
    # that another thread is creating or deleting. The scripts run side by side.
    with _LIFECYCLE:
        sandbox_start(cfg, SandboxRequest(sid=sid, image=spec.image, hostname=f"lab-{sid[:8]}",
                                          limits=Limits.from_lab(asdict(spec.limits))))
    try:
        yield sid
    finally:
        with _LIFECYCLE:
            sandbox_stop(cfg, sid)


def test_lab(spec: LabSpec, cfg: HostConfig, *, say: Callable[[StepOutcome], None] = lambda o: None) -> list[StepOutcome]:
    """Run one lab's steps in a fresh sandbox, then each wrong answer in its own; one outcome per row."""
    outcomes = _test_steps(spec, cfg, say=say)
    if any(not o.ok for o in outcomes if o.step in ("(start)", "(setup)")):
        return outcomes
    jobs = [(index, number, wrong) for index, step in enumerate(spec.steps) for number, wrong in enumerate(step.wrong, start=1)]
    # Each wrong answer has a sandbox of its own: a few at a time (they mostly wait on runc).
    with ThreadPoolExecutor(max_workers=WRONG_ANSWER_WORKERS) as pool:
        for outcome in pool.map(lambda job: _refute_safely(cfg, spec, *job), jobs):
            outcomes.append(outcome)
            say(outcome)
    return outcomes


def _refute_safely(cfg: HostConfig, spec: LabSpec, index: int, number: int, wrong) -> StepOutcome:
    t0 = time.monotonic()
    try:
        return _refute_wrong(cfg, spec, index, number, wrong, t0)
    except Exception as exc:  # a fixture that hangs, a step that cannot be replayed: a failed row
        return StepOutcome(spec.slug, f"{spec.steps[index].id} ✗{number}", False, str(exc), time.monotonic() - t0)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:120] if lines else ""


def _run_ok(cfg: HostConfig, sid: str, script: str | None, what: str, *, timeout: float = 120) -> None:
    if not script:
        return
    res = sandbox_exec(cfg, sid, script, timeout=timeout)
    if res.exit_code != 0:
        raise RuntimeError(f"{what} exited {res.exit_code}: {res.output.strip()[-300:]}")


def _refute_wrong(cfg: HostConfig, spec: LabSpec, index: int, number: int, wrong, t0: float) -> StepOutcome:
    """A fresh sandbox at step `index` (earlier steps solved), the wrong answer, the check must FAIL."""
    step = spec.steps[index]
    name = f"{step.id} ✗{number}"
    with fresh_sandbox(cfg, spec) as sid:
        _run_ok(cfg, sid, spec.setup, "lab setup", timeout=60)
        for earlier in spec.steps[:index]:
            _run_ok(cfg, sid, earlier.setup, f"step {earlier.id} setup", timeout=60)
            if earlier.check:
                _run_ok(cfg, sid, earlier.solution, f"step {earlier.id} solution")
        _run_ok(cfg, sid, step.setup, "step setup", timeout=60)
        sandbox_exec(cfg, sid, wrong.script, timeout=120)  # a wrong answer may well fail: only the check counts
        res = sandbox_exec(cfg, sid, step.check, timeout=float(step.check_timeout), lang="en")
    seconds = time.monotonic() - t0
    if res.exit_code == 0:
        return StepOutcome(spec.slug, name, False,
                           f"the check PASSED a wrong answer ({wrong.why.get('en')}): {_last_line(res.output)}", seconds)
    return StepOutcome(spec.slug, name, True, f"refused: {_last_line(res.output) or wrong.why.get('en')}", seconds)


def _test_steps(spec: LabSpec, cfg: HostConfig, *, say: Callable[[StepOutcome], None]) -> list[StepOutcome]:
    """Run one lab's steps in one fresh sandbox: check fails, solution, check passes."""
    outcomes: list[StepOutcome] = []

    def record(step: str, ok: bool, detail: str, t0: float) -> None:
        outcome = StepOutcome(spec.slug, step, ok, detail, time.monotonic() - t0)
        outcomes.append(outcome)
        say(outcome)

    sid = secrets.token_hex(8)
    t0 = time.monotonic()
    try:
        sandbox_start(cfg, SandboxRequest(sid=sid, image=spec.image, hostname=f"lab-{sid[:8]}", limits=Limits.from_lab(asdict(spec.limits))))
    except Exception as exc:
        record("(start)", False, f"sandbox did not start: {exc}", t0)
        return outcomes
    try:
        if spec.setup:
            res = sandbox_exec(cfg, sid, spec.setup, timeout=60)
            if res.exit_code != 0:
                record("(setup)", False, f"lab setup exited {res.exit_code}: {res.output.strip()[-300:]}", t0)
                return outcomes
        for step in spec.steps:
            t0 = time.monotonic()
            if not step.check:
                record(step.id, True, "no check (quiz or reading)", t0)
                continue
            try:
                outcomes.append(_prove_step(cfg, sid, step, spec.slug, t0)) or say(outcomes[-1])
            except Exception as exc:  # a check that hangs or a runc error: a failed row, not a crash
                record(step.id, False, str(exc), t0)
    finally:
        sandbox_stop(cfg, sid)
    return outcomes


def _prove_step(cfg: HostConfig, sid: str, step, lab: str, t0: float) -> StepOutcome:
    timeout = float(step.check_timeout)

    def row(ok: bool, detail: str) -> StepOutcome:
        return StepOutcome(lab, step.id, ok, detail, time.monotonic() - t0)

    if step.setup:
        res = sandbox_exec(cfg, sid, step.setup, timeout=60)
        if res.exit_code != 0:
            return row(False, f"step setup exited {res.exit_code}: {res.output.strip()[-300:]}")
    # The trainee's language is in LAB_LANG: prove the check in both.
    before = sandbox_exec(cfg, sid, step.check, timeout=timeout, lang="zh-hans", check=True)
    if before.exit_code == 0:
        return row(False, f"check passed BEFORE the solution: {before.output.strip()[-300:]}")
    sol = sandbox_exec(cfg, sid, step.solution or "", timeout=120)
    if sol.exit_code != 0:
        return row(False, f"solution exited {sol.exit_code}: {sol.output.strip()[-300:]}")
    after = sandbox_exec(cfg, sid, step.check, timeout=timeout, lang="en", check=True)
    if after.exit_code != 0:
        return row(False, f"check failed AFTER the solution: {after.output.strip()[-300:]}")
    return row(True, after.output.strip().splitlines()[-1][:120] if after.output.strip() else "passed")
