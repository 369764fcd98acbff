"""`labs test`: prove every step of a lab in a fresh sandbox.

For each lab: a new sandbox, the lab's setup, then for every step with a check:
step setup → check must FAIL → solution → check must PASS. The sandbox is the real
one trainees get (same image, limits, runc profile), run by a private relay.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
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
    # Capacity 0: its heartbeat must never make the site send a trainee's sandbox to it.
    env = dict(os.environ, LAB_HOST_NAME=test_cfg.host, LAB_HOST_CAPACITY="0")
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


def test_lab(spec: LabSpec, cfg: HostConfig, *, say: Callable[[StepOutcome], None] = lambda o: None) -> list[StepOutcome]:
    """Run one lab's steps in a fresh sandbox; one outcome per step."""
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
    before = sandbox_exec(cfg, sid, step.check, timeout=timeout)
    if before.exit_code == 0:
        return row(False, f"check passed BEFORE the solution: {before.output.strip()[-300:]}")
    sol = sandbox_exec(cfg, sid, step.solution or "", timeout=120)
    if sol.exit_code != 0:
        return row(False, f"solution exited {sol.exit_code}: {sol.output.strip()[-300:]}")
    after = sandbox_exec(cfg, sid, step.check, timeout=timeout)
    if after.exit_code != 0:
        return row(False, f"check failed AFTER the solution: {after.output.strip()[-300:]}")
    return row(True, after.output.strip().splitlines()[-1][:120] if after.output.strip() else "passed")
