"""9. Dashboards at scale (issue 16, DESIGN.md "Dashboards"): a cohort of 500 trainees ×
10 steps receives 50 events/s — checks, hints, quiz answers, joins — through the service
functions the worker and the web call (progress_record_check, hint_reveal, quiz_answer,
cohort_join), while an instructor's dashboard WebSocket is open through uvicorn. Timed at
that WebSocket client: event → the trainee's row showing it. Counted: database queries
per event (on the request path here; in the dashboards task inside a Celery worker that
adds them up in Redis, bench.dashworker), and the web process's CPU. The anchor is the
same run, same event mix and rate, on a cohort of one trainee.
"""
from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from websockets.sync.client import connect

from bench.dashworker import COUNTS_KEY
from bench.env import children_of, wait_for
from bench.report import Figure, pct

STEPS = 10
HINTS = 40  # per step: the one-trainee run reveals ~15 per step and must not run out
RATE = 50.0  # events per second
MIX = (("check", 60), ("hint", 15), ("answer", 20), ("join", 5))


def _lab_dir(root: Path) -> Path:
    """A 10-step lab: each step has a check, hints and a one-choice quiz."""
    import yaml

    steps = []
    for i in range(STEPS):
        steps.append({
            "id": f"step-{i + 1}", "title": {"zh-hans": f"第 {i + 1} 步：叠一层", "en": f"Step {i + 1}: add a layer"},
            "text": {"zh-hans": "叠一层。", "en": "Add a layer."}, "check": "true", "solution": "true",
            "hints": [{"zh-hans": f"提示 {h}", "en": f"Hint {h}"} for h in range(HINTS)],
            "quiz": {"kind": "single", "question": {"zh-hans": "哪一层可写？", "en": "Which layer is writable?"},
                     "choices": [{"id": "upper", "text": {"zh-hans": "上层", "en": "upper"}, "correct": True},
                                 {"id": "lower", "text": {"zh-hans": "下层", "en": "lower"}}]},
        })
    lab = {"slug": "dash", "title": {"zh-hans": "仪表盘压测", "en": "Dashboard bench"},
           "summary": {"zh-hans": "压测用。", "en": "For the bench."}, "level": "beginner", "minutes": 30,
           "image": "lab/base:latest", "steps": steps}
    d = root / "dash-lab"
    d.mkdir(exist_ok=True)
    (d / "lab.yaml").write_text(yaml.safe_dump(lab, allow_unicode=True, sort_keys=False))
    return d


def _cpu_s(pids: list[int]) -> float:
    """utime + stime of these processes, in seconds."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


@dataclass
class Watcher:
    """The instructor's dashboard WebSocket, read on a thread: every row with its arrival time."""

    url: str
    cookie: str
    origin: str
    rows: list[tuple[float, dict]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def open(self) -> None:
        self.ws = connect(self.url, additional_headers={"Cookie": self.cookie}, origin=self.origin,
                          open_timeout=15, max_size=None, compression=None)
        hello = json.loads(self.ws.recv(timeout=15))
        if hello.get("type") != "hello":
            raise RuntimeError(f"dashboard WebSocket said {hello}")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self.ws.recv(timeout=0.2)
            except TimeoutError:
                continue
            except Exception:
                return
            t = time.monotonic()
            event = json.loads(msg)
            if event.get("type") == "row":
                self.rows.append((t, event))

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.ws.close()


def _cells(event: dict) -> dict[str, dict]:
    return {c["step"]: c for c in event["row"]["steps"]}


@dataclass
class Event:
    kind: str
    user_id: int
    t0: float
    step: str | None = None
    field: str | None = None  # the cell's counter that shows this event
    at_least: int = 0

    def shown_by(self, event: dict) -> bool:
        """True when this dashboard row shows the event."""
        if event["user"] != self.user_id:
            return False
        if self.field is None:  # a join (the row appears) or an answer (the row is re-sent)
            return True
        return _cells(event)[self.step][self.field] >= self.at_least


def _world(size: int, joiners: int, tag: str, lab, teacher) -> tuple[object, list, list]:
    """A cohort of `size` trainees spread over the steps, every step's progress row made (so
    an event's queries do not depend on whether a row exists yet), and `joiners` users
    who will join during the run. Set-up only: the events themselves go through services."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from cohorts.models import Membership
    from cohorts.services import cohort_create
    from labs.models import StepProgress

    User = get_user_model()
    cohort = cohort_create(owner=teacher, name=f"基准 {tag}（{size}）", lab_slugs=[lab.slug])
    User.objects.bulk_create([User(username=f"{tag}-{i}", first_name=f"学员{i}", password="!")
                              for i in range(size + joiners)])
    users = list(User.objects.filter(username__startswith=f"{tag}-").order_by("id"))
    trainees, joining = users[:size], users[size:]
    Membership.objects.bulk_create([Membership(cohort=cohort, user=u) for u in trainees])
    rng, now, steps = random.Random(size), timezone.now(), list(lab.steps.order_by("position"))
    progress = []
    for u in trainees:
        here = rng.randrange(STEPS)
        for k, s in enumerate(steps):
            progress.append(StepProgress(user=u, step=s, attempts=1 if k < here else 0,
                                         passed_at=now if k < here else None, passed_by="check" if k < here else ""))
    StepProgress.objects.bulk_create(progress, batch_size=2000)
    return cohort, trainees, joining


def _run(ctx, *, size: int, events: int, tag: str, lab, teacher, watcher_for, worker_pids) -> dict:
    """One run: `events` events at RATE/s on a cohort of `size`; what the dashboard saw."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from cohorts.services import cohort_join
    from labs.learning import hint_reveal, quiz_answer
    from labs.models import StepProgress
    from labs.redis import sync_redis
    from labs.services import CheckResult, progress_record_check

    rng = random.Random(1600)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    plan = rng.choices(kinds, weights, k=events)
    cohort, trainees, joining = _world(size, plan.count("join"), tag, lab, teacher)
    steps = list(lab.steps.order_by("position"))
    counters = {(p.user_id, p.step_id): [p.attempts, p.hints_used] for p in
                StepProgress.objects.filter(user__in=trainees, step__lab=lab)}
    t_page = time.perf_counter()
    status, _ = ctx.teacher_browser.request("GET", f"/cohorts/{cohort.id}/")
    page_ms = (time.perf_counter() - t_page) * 1000
    if status != 200:
        raise RuntimeError(f"dashboard page: HTTP {status}")
    watcher = watcher_for(cohort.id)
    watcher.open()
    r = sync_redis()
    r.delete(COUNTS_KEY)
    web_pid = ctx.env.web.pid
    cpu_web0, cpu_worker0, wall0 = _cpu_s([web_pid]), _cpu_s(worker_pids()), time.monotonic()
    sent: list[Event] = []
    request_queries: Counter = Counter()
    late = 0
    start = time.monotonic()
    try:
        for i, kind in enumerate(plan):
            due = start + i / RATE
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                late += 1
            if kind == "join":
                user = joining.pop()
                ev = Event(kind, user.id, time.monotonic())
                with CaptureQueriesContext(connection) as q:
                    cohort_join(user=user, code=cohort.invite_code)
            else:
                user, step = rng.choice(trainees), rng.choice(steps)
                c = counters[(user.id, step.id)]
                ev = Event(kind, user.id, time.monotonic(), step=step.key)
                with CaptureQueriesContext(connection) as q:
                    if kind == "check":
                        progress_record_check(user=user, step=step, result=CheckResult(passed=False, message="还没有"),
                                              by="check")
                        c[0] += 1
                        ev.field, ev.at_least = "attempts", c[0]
                    elif kind == "hint":
                        hint_reveal(user=user, step=step, lang="zh-hans")
                        c[1] += 1
                        ev.field, ev.at_least = "hints", c[1]
                    else:
                        quiz_answer(user=user, step=step, answer=rng.choice(["upper", "lower"]), lang="zh-hans")
            request_queries[kind] += len(q.captured_queries)
            sent.append(ev)
        sending_s = time.monotonic() - start
        # Drained: every event shown (or 20 s without it).
        deadline = time.monotonic() + 20
        latency: dict[int, float] = {}
        by_user: dict[int, list[tuple[float, dict]]] = defaultdict(list)
        seen = 0
        while True:
            rows = watcher.rows[seen:]  # the reader only appends
            seen += len(rows)
            for t, row in rows:
                by_user[row["user"]].append((t, row))
            for n, ev in enumerate(sent):
                if n not in latency:
                    shown = next((t for t, row in by_user[ev.user_id] if t >= ev.t0 and ev.shown_by(row)), None)
                    if shown is not None:
                        latency[n] = (shown - ev.t0) * 1000
            if len(latency) == len(sent) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        wall = time.monotonic() - wall0
        cpu_web, cpu_worker = _cpu_s([web_pid]) - cpu_web0, _cpu_s(worker_pids()) - cpu_worker0
        wait_for(lambda: int(r.hget(COUNTS_KEY, "lab:tasks") or 0) + int(r.hget(COUNTS_KEY, "join:tasks") or 0) > 0,
                 timeout=10, what="the worker's query counts")
        time.sleep(0.5)  # the last task's postrun count
        counts = {k.decode(): float(v) for k, v in r.hgetall(COUNTS_KEY).items()}
    finally:
        watcher.close()
    by_kind = defaultdict(list)
    for n, ms in latency.items():
        by_kind[sent[n].kind].append(ms)
    timed = [ms for n, ms in latency.items() if sent[n].kind != "answer"]
    tasks = counts.get("lab:tasks", 0) + counts.get("join:tasks", 0)
    task_queries = counts.get("lab:queries", 0) + counts.get("join:queries", 0)
    n_kind = Counter(plan)
    return {
        "size": size, "events": events, "sent_s": sending_s, "rate": events / sending_s, "late": late,
        "shown": len(latency), "lost": len(sent) - len(latency), "page_ms": page_ms,
        "p50": pct(timed, 50), "p99": pct(timed, 99), "max": max(timed) if timed else float("nan"),
        "answer_p50": pct(by_kind["answer"], 50), "by_kind_p99": {k: pct(v, 99) for k, v in by_kind.items()},
        "request_queries_per_event": sum(request_queries.values()) / events,
        "request_queries_by_kind": {k: request_queries[k] / n_kind[k] for k in n_kind},
        "task_queries_per_update": counts.get("lab:queries", 0) / max(1, counts.get("lab:rows", 0)),
        "rows_sent": counts.get("lab:rows", 0) + counts.get("join:rows", 0),
        "task_queries_per_join": counts.get("join:queries", 0) / max(1, counts.get("join:tasks", 0)),
        "tasks": tasks, "tasks_per_event": tasks / events, "task_ms_mean": (counts.get("lab:ms", 0) + counts.get("join:ms", 0)) / max(1, tasks),
        "queries_per_event": (sum(request_queries.values()) + task_queries) / events,
        "web_cpu_pct": 100 * cpu_web / wall, "web_cpu_ms_per_event": 1000 * cpu_web / events,
        "samples": [[round(sent[n].t0 - start, 3), round(ms, 1), sent[n].kind] for n, ms in sorted(latency.items())],
        "worker_cpu_pct": 100 * cpu_worker / wall, "worker_cpu_ms_per_event": 1000 * cpu_worker / events, "wall_s": wall,
    }


def _start_worker(env):
    """Stop the host's worker (it would take dashboard tasks too) and start the counting one."""
    import redis

    env._stop(env.worker, 60)
    name = f"{env.host}-dash"
    r = redis.Redis.from_url(os.environ["REDIS_URL"])
    r.delete(f"lab:worker:{name}")
    proc = env._spawn([sys.executable, "-m", "celery", "-A", "bench.dashworker", "worker", "-l", "warning",
                       "-c", str(env.concurrency), "-Q", "lab.default", "-n", f"{name}@%h",
                       "--without-mingle", "--without-gossip"], "dashworker.log", LAB_HOST_NAME=name)

    def up():
        if proc.poll() is not None:
            raise RuntimeError(f"dashboard worker exited: {env._tail('dashworker.log')}")
        return r.get(f"lab:worker:{name}")

    wait_for(up, timeout=60, what="dashboard worker ready")
    r.close()
    return proc


def run(ctx) -> list[Figure]:
    """The section: the one-trainee anchor, then the cohort of 500."""
    from cohorts.services import instructor_grant
    from labs.labfile import load_lab
    from labs.services import lab_import

    env = ctx.env
    events = 250 if ctx.args.quick else 1000
    lab, _ = lab_import(spec=load_lab(_lab_dir(env.data_dir)))
    ctx.teacher_browser = ctx.make_browsers(1, prefix="dash-teacher")[0]
    instructor_grant(username="dash-teacher0")
    from django.contrib.auth import get_user_model

    teacher = get_user_model().objects.get(username="dash-teacher0")
    cookie = f"sessionid={ctx.teacher_browser.cookies['sessionid']}"
    ws_base = env.web_url.replace("http", "ws", 1)

    def watcher_for(cohort_id: int) -> Watcher:
        return Watcher(f"{ws_base}/ws/cohorts/{cohort_id}/", cookie, env.web_url)

    worker = _start_worker(env)
    worker_pids = lambda: [worker.pid, *children_of(worker.pid)]  # noqa: E731
    try:
        one = _run(ctx, size=1, events=events, tag="dash1", lab=lab, teacher=teacher, watcher_for=watcher_for,
                   worker_pids=worker_pids)
        big = _run(ctx, size=500, events=events, tag="dash500", lab=lab, teacher=teacher, watcher_for=watcher_for,
                   worker_pids=worker_pids)
    finally:
        env._stop(worker, 60)
        ctx.teacher_browser.close()
        env.start_celery()  # the host's worker back for the sections after this one
    sec, n = "9. Dashboards (500 trainees × 10 steps, 50 events/s)", big["events"]
    vs = "same with 1 trainee"
    extra = {"one": one, "500": big}
    return [
        Figure(sec, "event → dashboard row p50", big["p50"], "ms", vs, one["p50"], n=big["shown"], extra=extra),
        Figure(sec, "event → dashboard row p99", big["p99"], "ms", vs, one["p99"], target=("<=", 1000), n=big["shown"]),
        Figure(sec, "events not shown within 20 s", big["lost"], "events", vs, one["lost"], target=("<=", 0), n=n),
        Figure(sec, "DB queries per event, request path", big["request_queries_per_event"], "", vs,
               one["request_queries_per_event"], ratio_target=("<=", 1.0), ratio_note="independent of cohort size", n=n),
        Figure(sec, "DB queries per dashboard row sent (task)", big["task_queries_per_update"], "", vs,
               one["task_queries_per_update"], ratio_target=("<=", 1.0), ratio_note="independent of cohort size",
               n=int(big["rows_sent"])),
        Figure(sec, "dashboard tasks per event", big["tasks_per_event"], "", vs, one["tasks_per_event"], n=n),
        Figure(sec, "DB queries per event, all", big["queries_per_event"], "", vs, one["queries_per_event"], n=n),
        Figure(sec, "web process CPU", big["web_cpu_pct"], "%", vs, one["web_cpu_pct"], n=n),
        Figure(sec, "web process CPU per event", big["web_cpu_ms_per_event"], "ms", vs, one["web_cpu_ms_per_event"], n=n),
        Figure(sec, "worker CPU per event (dashboards task)", big["worker_cpu_ms_per_event"], "ms", vs,
               one["worker_cpu_ms_per_event"], n=n),
        Figure(sec, "dashboard page load (GET)", big["page_ms"], "ms", vs, one["page_ms"]),
    ]
