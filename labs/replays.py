"""The replay's timeline: markers at check results and step changes within a session,
and the moment the trainee got stuck (the same rule as the cohort dashboard's cells:
COHORT_STUCK_ATTEMPTS failed checks and COHORT_STUCK_MINUTES since the step started)."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from labs.models import CheckRecord, Session, Step, StepProgress
from labs.selectors import pick


def _epoch(at: datetime) -> float:
    return round(at.timestamp(), 3)


def replay_markers(*, session: Session, lang: str = "zh-hans") -> dict:
    """{"markers": [{at, kind: step|pass|fail, step, title}], "stuck_at", "started_at", "ended_at"} (epochs)."""
    start, end = session.created_at, session.ended_at or timezone.now()
    steps = {s.id: s for s in Step.objects.filter(lab_id=session.lab_id)}
    checks = list(CheckRecord.objects.filter(user_id=session.user_id, step_id__in=steps, at__gte=start, at__lte=end))
    progress = {p.step_id: p for p in StepProgress.objects.filter(user_id=session.user_id, step_id__in=steps)}
    markers = [{"at": _epoch(c.at), "kind": "pass" if c.passed else "fail", "step": steps[c.step_id].key,
                "title": pick(steps[c.step_id].title, lang)} for c in checks]
    markers += [{"at": _epoch(p.started_at), "kind": "step", "step": steps[p.step_id].key,
                 "title": pick(steps[p.step_id].title, lang)} for p in progress.values() if start <= p.started_at <= end]
    attempts = int(getattr(settings, "COHORT_STUCK_ATTEMPTS", 3))
    minutes = int(getattr(settings, "COHORT_STUCK_MINUTES", 10))
    stuck: list[datetime] = []
    for step_id, p in progress.items():
        fails = [c.at for c in checks if c.step_id == step_id and not c.passed]
        if len(fails) < attempts:
            continue
        moment = max(fails[attempts - 1], p.started_at + timedelta(minutes=minutes))
        if moment <= end and (p.passed_at is None or moment < p.passed_at):
            stuck.append(moment)
    return {"markers": sorted(markers, key=lambda m: m["at"]), "stuck_at": _epoch(min(stuck)) if stuck else None,
            "started_at": _epoch(start), "ended_at": _epoch(end)}
