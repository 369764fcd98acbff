"""`labs test`: prove every step of a lab in a fresh sandbox.

For each lab: a new sandbox, the lab's setup, then for every step with a check:
step setup → check must FAIL → solution → check must PASS. Then every wrong answer a
step lists (`wrong:`) runs in a fresh sandbox brought to that step (lab setup, each
earlier step's setup and solution, this step's setup), and the check must still FAIL.
The sandbox is the real one trainees get (same image, limits, runc profile), run by a
private relay.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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


@contextmanager
def private_relay(cfg: HostConfig) -> Iterator[HostConfig]:
    """A relay of its own (a throwaway host name) for the duration of the test."""
    test_cfg = replace(cfg, host=f"labtest{os.getpid()}")
    env = dict(os.environ, LAB_HOST_NAME=test_cfg.host)
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
        proc.terminate()
        proc.wait(30)


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
    before = sandbox_exec(cfg, sid, step.check, timeout=timeout, lang="zh-hans")
    if before.exit_code == 0:
        return row(False, f"check passed BEFORE the solution: {before.output.strip()[-300:]}")
    sol = sandbox_exec(cfg, sid, step.solution or "", timeout=120)
    if sol.exit_code != 0:
        return row(False, f"solution exited {sol.exit_code}: {sol.output.strip()[-300:]}")
    after = sandbox_exec(cfg, sid, step.check, timeout=timeout, lang="en")
    if after.exit_code != 0:
        return row(False, f"check failed AFTER the solution: {after.output.strip()[-300:]}")
    return row(True, after.output.strip().splitlines()[-1][:120] if after.output.strip() else "passed")
